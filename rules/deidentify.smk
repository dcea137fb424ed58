# De-identify under each item's cohort policy, then pass the leak gate. One job per batch.


rule deidentify_batch:
    input:
        manifest=MANIFEST,
        converted=tree("results/convert/batch-{batch}"),
        originals=get_batch_originals,
        policies=get_batch_policies,
        config=config_file("core"),
    output:
        tree("results/deid/batch-{batch}"),
    log:
        "logs/deidentify_batch/{batch}.log",
    benchmark:
        "benchmarks/deidentify_batch/{batch}.tsv"
    group:
        "batch"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=2048,
        runtime=get_batch_runtime,
    params:
        originals=get_batch_fingerprint,
    shell:
        "imagedepot batch deid {input.manifest:q} {wildcards.batch} {input.converted:q}"
        " {output:q} --config {input.config:q} --jobs {threads} > {log:q} 2>&1"


rule check_leaks_batch:
    input:
        manifest=MANIFEST,
        deid=tree("results/deid/batch-{batch}"),
        originals=get_batch_originals,
    output:
        tree("results/leakcheck/batch-{batch}"),
    log:
        "logs/check_leaks_batch/{batch}.log",
    benchmark:
        "benchmarks/check_leaks_batch/{batch}.tsv"
    group:
        "batch"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=2048,
        runtime=get_batch_runtime,
    params:
        originals=get_batch_fingerprint,
    shell:
        "imagedepot batch leakcheck {input.manifest:q} {wildcards.batch} {input.deid:q}"
        " {output:q} --jobs {threads} > {log:q} 2>&1"
