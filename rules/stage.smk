# Stage: what leaves the trusted zone, local and idempotent; then the run summary.


rule stage_local:
    input:
        manifest=MANIFEST,
        leaks=get_leak_reports,
        deid=get_deid_dirs,
        fhir=get_fhir_dirs,
    output:
        directory("results/stage/{destination}"),
    log:
        "logs/stage_local/{destination}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=60,
    params:
        config=CONFIG_JSON,
    shell:
        "imagedepot stage local {wildcards.destination:q} {output:q}"
        " --manifest {input.manifest:q} --deid-root results/deid"
        " --leak-root results/leakcheck --fhir-root results/fhir"
        " --config-json {params.config:q} > {log:q} 2>&1"


rule summarize_run:
    input:
        manifest=MANIFEST,
        leaks=get_leak_reports,
        stages=get_stage_dirs,
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
        "imagedepot summary --manifest {input.manifest:q} --leak-reports {input.leaks:q}"
        " --stage-dirs {input.stages:q} --out {output:q} 2> {log:q}"
