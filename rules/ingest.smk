# Ingest: scan the inbox, group files into items, account for every file.


checkpoint scan_inputs:
    input:
        samples=config["samples"],
    output:
        manifest=MANIFEST,
        item_dir=directory(ITEMS_DIR),
    log:
        "logs/scan_inputs/scan.log",
    conda:
        ENV
    params:
        inbox=config["inbox"],
        config=config_json("scan"),
    shell:
        "imagedepot scan {params.inbox:q} --samples {input.samples:q}"
        " --config-json {params.config:q} --out {output.manifest:q}"
        " --items-dir {output.item_dir:q} --force > {log:q} 2>&1"
