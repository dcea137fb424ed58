# Ingest: scan the inbox, group files into items, account for every file.


checkpoint scan_inputs:
    input:
        samples=config["samples"],
    output:
        manifest=MANIFEST,
        items=directory(ITEMS_DIR),
    params:
        inbox=config["inbox"],
        config=CONFIG_JSON,
    log:
        "logs/scan_inputs/scan.log",
    conda:
        ENV
    shell:
        "imagedepot scan {params.inbox:q} --samples {input.samples:q}"
        " --config-json {params.config:q} --out {output.manifest:q}"
        " --items-dir {output.items:q} --force > {log:q} 2>&1"
