# Convert: originals -> open formats, inside the trusted zone (originals are never modified).


rule convert_item:
    input:
        item=get_item_json,
        originals=get_item_originals,
    output:
        directory("results/convert/{item}"),
    log:
        "logs/convert_item/{item}.log",
    benchmark:
        "benchmarks/convert_item/{item}.tsv"
    group:
        "item"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=get_convert_mem_mb,
        runtime=get_item_runtime,
    params:
        flags=get_convert_flags,
    shell:
        "imagedepot convert item {input.item:q} {output:q} {params.flags} > {log:q} 2>&1"
