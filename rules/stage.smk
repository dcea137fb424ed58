# Stage: what leaves the trusted zone, local and idempotent; then the run summary.


rule stage_destination:
    input:
        manifest=MANIFEST,
        leaks=get_batch_trees("leakcheck"),
        deid=get_batch_trees("deid"),
        fhir=tree("results/fhir"),
        policies=[cohort_file(p) for p in config["policies"].values()],
        config=config_file("core"),
    output:
        tree("results/stage/{destination}"),
    log:
        "logs/stage_destination/{destination}.log",
    benchmark:
        "benchmarks/stage_destination/{destination}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=60,
    shell:
        "imagedepot stage local {wildcards.destination:q} {output:q}"
        " --manifest {input.manifest:q} --deid-root {input.deid:q}"
        " --leak-root {input.leaks:q} --fhir-root {input.fhir:q}"
        " --config {input.config:q} > {log:q} 2>&1"


rule summarize_run:
    input:
        manifest=MANIFEST,
        leaks=get_batch_trees("leakcheck"),
        stages=get_stage_trees,
        fhir=tree("results/fhir"),
    output:
        "results/summary.json",
    log:
        "logs/summarize_run/summary.log",
    benchmark:
        "benchmarks/summarize_run/summary.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=512,
        runtime=10,
    shell:
        "imagedepot summary --manifest {input.manifest:q} --leak-root {input.leaks:q}"
        " --fhir-root {input.fhir:q} --stage-dirs {input.stages:q} --out {output:q} 2> {log:q}"


rule stage_xnat:
    input:
        staged=tree("results/stage/{destination}"),
        config=config_file("core"),
    output:
        "results/stage/{destination}.xnat-plan.json",
    log:
        "logs/stage_xnat/{destination}.log",
    benchmark:
        "benchmarks/stage_xnat/{destination}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=30,
    shell:
        "imagedepot stage xnat {input.staged:q} {output:q} --destination {wildcards.destination:q}"
        " --config {input.config:q} --force > {log:q} 2>&1"


rule stage_bia:
    input:
        staged=tree("results/stage/{destination}"),
        manifest=MANIFEST,
        config=config_file("core"),
    output:
        tree("results/bia/{destination}"),
    log:
        "logs/stage_bia/{destination}.log",
    benchmark:
        "benchmarks/stage_bia/{destination}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=60,
    shell:
        "imagedepot stage bia {wildcards.destination:q} {output:q} --staged {input.staged:q}"
        " --manifest {input.manifest:q} --config {input.config:q} > {log:q} 2>&1"
