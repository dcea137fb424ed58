# Stage: what leaves the trusted zone, local and idempotent; then the run summary.


rule stage_destination:
    input:
        manifest=MANIFEST,
        leaks=get_batch_dirs("leakcheck"),
        deid=get_batch_dirs("deid"),
        fhir=get_fhir_dirs,
    output:
        directory("results/stage/{destination}"),
    log:
        "logs/stage_destination/{destination}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=60,
    params:
        config=config_json(),
    shell:
        "imagedepot stage local {wildcards.destination:q} {output:q}"
        " --manifest {input.manifest:q} --deid-root results/deid"
        " --leak-root results/leakcheck --fhir-root results/fhir"
        " --config-json {params.config:q} > {log:q} 2>&1"


rule summarize_run:
    input:
        manifest=MANIFEST,
        leaks=get_batch_dirs("leakcheck"),
        stages=get_stage_dirs,
        fhir=get_fhir_dirs,
    output:
        "results/summary.json",
    log:
        "logs/summarize_run/summary.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=512,
        runtime=10,
    shell:
        "imagedepot summary --manifest {input.manifest:q} --leak-root results/leakcheck --fhir-root results/fhir"
        " --stage-dirs {input.stages:q} --out {output:q} 2> {log:q}"


rule stage_xnat:
    input:
        "results/stage/{destination}",
    output:
        "results/stage/{destination}.xnat-plan.json",
    log:
        "logs/stage_xnat/{destination}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=30,
    params:
        config=config_json(),
    shell:
        "imagedepot stage xnat {input:q} {output:q} --destination {wildcards.destination:q}"
        " --config-json {params.config:q} --force > {log:q} 2>&1"


rule stage_bia:
    input:
        staged="results/stage/{destination}",
        item_dir=ITEMS_DIR,
    output:
        directory("results/bia/{destination}"),
    log:
        "logs/stage_bia/{destination}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=60,
    params:
        config=config_json(),
    shell:
        "imagedepot stage bia {wildcards.destination:q} {output:q} --staged {input.staged:q}"
        " --items-dir {input.item_dir:q} --config-json {params.config:q} > {log:q} 2>&1"
