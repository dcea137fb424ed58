# Convert: originals -> open formats, inside the trusted zone (originals are never modified).
# One job per batch of items (scan.batch_size), each item in its own folder inside the batch;
# the batch folder is tracked by its tree marker (rules/common.smk: tree()).


rule convert_batch:
    input:
        manifest=MANIFEST,
        originals=get_batch_originals,
    output:
        tree("results/convert/batch-{batch}"),
    log:
        "logs/convert_batch/{batch}.log",
    benchmark:
        "benchmarks/convert_batch/{batch}.tsv"
    group:
        "batch"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=get_convert_mem_mb,
        runtime=get_batch_runtime,
    params:
        flags=get_convert_flags,
        originals=get_batch_fingerprint,
    shell:
        "imagedepot batch convert {input.manifest:q} {wildcards.batch} {output:q}"
        " {params.flags} --jobs {threads} > {log:q} 2>&1"


rule build_bids_tree:
    input:
        manifest=MANIFEST,
        convert=get_batch_trees("convert"),
        deid=get_batch_trees("deid"),
        leaks=get_batch_trees("leakcheck"),
    output:
        tree("results/bids"),
    log:
        "logs/build_bids_tree/bids.log",
    benchmark:
        "benchmarks/build_bids_tree/bids.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=30,
    params:
        rules=get_bids_rules_flag,
    shell:
        "imagedepot convert bids {input.manifest:q} {output:q} --convert-root {input.convert:q}"
        " --deid-root {input.deid:q} --leak-root {input.leaks:q} {params.rules} > {log:q} 2>&1"
