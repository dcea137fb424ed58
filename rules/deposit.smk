# Deposit: network-facing targets, never part of the default `all`:
#   snakemake deposit_xnat_all     upload every xnat destination (credentials: env or ~/.netrc)
#   snakemake deposit_bia_all      upload + submit every bia destination
# For `folder` destinations the deposit is the staged folder itself; `verify_deposit` re-checks
# its checksums (e.g. after copying it to the deposit location).
# `imagedepot deposit xnat|bia` first run the release check (`imagedepot validate` on the staged
# folder or the packages) and upload nothing when a file fails it.


rule verify_deposit:
    input:
        tree("results/stage/{destination}"),
    output:
        "results/deposit/{destination}.verified.txt",
    log:
        "logs/verify_deposit/{destination}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=512,
        runtime=30,
    shell:
        "imagedepot stage verify {input:q} > {output:q} 2> {log:q}"


rule deposit_xnat:
    input:
        staged=tree("results/stage/{destination}"),
        plan="results/stage/{destination}.xnat-plan.json",
        config=config_file("schedule"),
    output:
        "results/deposit/{destination}.xnat-receipt.json",
    log:
        "logs/deposit_xnat/{destination}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=240,
    shell:
        "imagedepot deposit xnat {input.staged:q} --plan {input.plan:q}"
        " --destination {wildcards.destination:q} --config {input.config:q}"
        " --receipt {output:q} > {log:q} 2>&1"


rule deposit_bia:
    input:
        packages=tree("results/bia/{destination}"),
        config=config_file("schedule"),
    output:
        "results/deposit/{destination}.bia.json",
    log:
        "logs/deposit_bia/{destination}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=480,
    params:
        state_db=config.get("schedule", {}).get("state_db", "results/deposit/state.sqlite"),
    shell:
        "imagedepot deposit bia {wildcards.destination:q} {input.packages:q}"
        " --state-db {params.state_db:q} --report {output:q} --config {input.config:q}"
        " > {log:q} 2>&1"


rule deposit_xnat_all:
    input:
        get_deposit_targets("xnat"),


rule deposit_bia_all:
    input:
        get_deposit_targets("bia"),
