# FHIR: one transaction bundle per dataset, from de-identified, leak-checked items only.


rule build_fhir_bundle:
    input:
        item_dir=ITEMS_DIR,
        deid=get_dataset_batch_dirs("deid"),
        leaks=get_dataset_batch_dirs("leakcheck"),
        convert=get_dataset_batch_dirs("convert"),
        clinical=get_fhir_clinical,
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
        config=config_json("fhir"),
    shell:
        "imagedepot fhir bundle {wildcards.dataset:q} --items-dir {input.item_dir:q}"
        " --deid-root results/deid --leak-root results/leakcheck --convert-root results/convert"
        " --out {output:q}/bundle.json --config-json {params.config:q} > {log:q} 2>&1"


rule push_fhir_bundle:
    input:
        "results/fhir/{dataset}",
    output:
        "results/fhir_push/{dataset}.json",
    log:
        "logs/push_fhir_bundle/{dataset}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=512,
        runtime=30,
    params:
        url=get_fhir_server_url,
        retries=config.get("fhir", {}).get("push_retries", 4),
        token_env=config.get("fhir", {}).get("token_env", "IMAGEDEPOT_FHIR_TOKEN"),
    shell:
        "imagedepot fhir push {input:q}/bundle.json --url {params.url:q} --retries {params.retries}"
        " --token-env {params.token_env:q} --report {output:q} > {log:q} 2>&1"


# Named network target, never in `all`: snakemake push_fhir (needs fhir.server_url).
rule push_fhir:
    input:
        get_fhir_push_reports,
