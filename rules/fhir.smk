# FHIR: one transaction bundle per dataset, from de-identified, leak-checked items only.
# One job for every dataset (results/fhir/<dataset>/bundle.json + bundle.status.json).


rule build_fhir_bundles:
    input:
        manifest=MANIFEST,
        deid=get_batch_trees("deid"),
        leaks=get_batch_trees("leakcheck"),
        convert=get_batch_trees("convert"),
        originals=get_all_originals,
        clinical=get_fhir_clinical,
        config=config_file("fhir"),
    output:
        tree("results/fhir"),
    log:
        "logs/build_fhir_bundles/fhir.log",
    benchmark:
        "benchmarks/build_fhir_bundles/fhir.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=2048,
        runtime=60,
    params:
        clinical=get_clinical_flag,
        originals=get_all_fingerprint,
    shell:
        "imagedepot fhir bundle --manifest {input.manifest:q} --deid-root {input.deid:q}"
        " --leak-root {input.leaks:q} --convert-root {input.convert:q} {params.clinical}"
        " --out-dir {output:q} --config {input.config:q} --jobs {threads} > {log:q} 2>&1"


rule push_fhir_bundle:
    input:
        tree("results/fhir"),
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
        "imagedepot fhir push {wildcards.dataset:q}/bundle.json --tree {input:q}"
        " --url {params.url:q} --retries {params.retries}"
        " --token-env {params.token_env:q} --report {output:q} > {log:q} 2>&1"


# Named network target, never in `all`: snakemake push_fhir (needs fhir.server_url).
rule push_fhir:
    input:
        get_fhir_push_reports,
