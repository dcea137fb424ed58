# De-identify under the item's cohort policy, then pass the leak gate.


rule deidentify_item:
    input:
        item=get_item_json,
        converted="results/convert/{item}",
        policy=get_item_policy,
    output:
        directory("results/deid/{item}"),
    log:
        "logs/deidentify_item/{item}.log",
    benchmark:
        "benchmarks/deidentify_item/{item}.tsv"
    group:
        "item"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=get_item_runtime,
    params:
        key_flags=get_key_flags,
        linkage=config["pseudonymisation"]["linkage_dir"],
    shell:
        "imagedepot deid item {input.item:q} {input.converted:q} {output:q}"
        " --policy {input.policy:q} {params.key_flags} --linkage-dir {params.linkage:q}"
        " > {log:q} 2>&1"


rule check_leaks:
    input:
        item=get_item_json,
        deid="results/deid/{item}",
    output:
        "results/leakcheck/{item}.json",
    log:
        "logs/check_leaks/{item}.log",
    group:
        "item"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=get_item_runtime,
    shell:
        "imagedepot leakcheck --item {input.item:q} {input.deid:q} --report {output:q}"
        " > {log:q} 2>&1"
