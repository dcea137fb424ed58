# De-identify under each item's cohort policy, then pass the leak gate. One job per batch.


rule deidentify_batch:
    input:
        item_dir=ITEMS_DIR,
        converted="results/convert/batch-{batch}",
        policies=get_batch_policies,
    output:
        directory("results/deid/batch-{batch}"),
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
        config=config_json(),
    shell:
        "imagedepot batch deid {input.item_dir:q} {wildcards.batch} {input.converted:q}"
        " {output:q} --config-json {params.config:q} --jobs {threads} > {log:q} 2>&1"


rule check_leaks_batch:
    input:
        item_dir=ITEMS_DIR,
        deid="results/deid/batch-{batch}",
    output:
        directory("results/leakcheck/batch-{batch}"),
    log:
        "logs/check_leaks_batch/{batch}.log",
    group:
        "batch"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=2048,
        runtime=get_batch_runtime,
    shell:
        "imagedepot batch leakcheck {input.item_dir:q} {wildcards.batch} {input.deid:q}"
        " {output:q} --jobs {threads} > {log:q} 2>&1"
