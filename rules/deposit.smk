# Deposit: network-facing targets, never part of the default `all`.
# For `folder` destinations the deposit is the staged folder itself; `verify_deposit` re-checks
# its checksums (e.g. after copying it to the deposit location). XNAT and BioImage Archive
# uploads are added here as named targets.


rule verify_deposit:
    input:
        "results/stage/{destination}",
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
