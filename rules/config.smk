# Config: the configuration the CLI reads, as small files instead of JSON on each command line.
# results/config/<view>.json holds the sections one group of rules reads (CONFIG_VIEWS in
# rules/common.smk); the rules take it as input and pass `--config {input.config:q}`. The text is a
# parameter, so Snakemake rewrites a file when its sections change, and only the rules that read
# it re-run. No secrets: the config has none (rules/common.smk refuses them).


rule write_config:
    output:
        "results/config/{view}.json",
    log:
        "logs/write_config/{view}.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=256,
        runtime=5,
    params:
        text=get_config_view,
    run:
        write_text(output[0], params.text)
        write_text(log[0], f"wrote {output[0]}\n")
