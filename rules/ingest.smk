# Ingest: scan the inbox, group files into items, account for every file.


checkpoint scan_inputs:
    input:
        samples=cohort_file(config["samples"]),
        file_lists=[cohort_file(p) for p in SAMPLE_FILE_LISTS],
        policies=[cohort_file(p) for p in config["policies"].values()],
        inbox=config["inbox"],
        config=config_file("scan"),
    output:
        manifest=MANIFEST,
    log:
        "logs/scan_inputs/scan.log",
    benchmark:
        "benchmarks/scan_inputs/scan.tsv"
    conda:
        ENV
    shell:
        "imagedepot scan {input.inbox:q} --samples {input.samples:q}"
        " --config {input.config:q} --out {output.manifest:q} --force > {log:q} 2>&1"
