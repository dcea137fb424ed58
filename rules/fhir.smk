# FHIR: one transaction bundle per dataset, from de-identified, leak-checked items only.


rule build_fhir_bundle:
    input:
        item_dir=ITEMS_DIR,
        deid=get_dataset_deid_dirs,
        leaks=get_dataset_leak_reports,
    output:
        directory("results/fhir/{dataset}"),
    log:
        "logs/build_fhir_bundle/{dataset}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=30,
    params:
        config=CONFIG_JSON,
    shell:
        "imagedepot fhir bundle {wildcards.dataset:q} --items-dir {input.item_dir:q}"
        " --deid-root results/deid --leak-root results/leakcheck"
        " --out {output:q}/bundle.json --config-json {params.config:q} > {log:q} 2>&1"
