# Report: the tables and figures of the run report, from what the run wrote. Local and cheap; part
# of the default run. `snakemake --report report.html` then gathers them (with the rule graph,
# runtimes and the workflow's description, report/workflow.rst) into one HTML file.
# Trusted zone: the pictures show burned-in text before it was blanked; never staged.


rule make_report:
    input:
        summary="results/summary.json",
        manifest=MANIFEST,
        deid=get_batch_trees("deid"),
        benchmarks=get_benchmark_files,
    output:
        accounting=report(
            "results/report/accounting.html",
            category="1. Accounting",
            caption="../report/accounting.rst",
            labels={"content": "inputs per dataset (table)"},
        ),
        accounting_chart=report(
            "results/report/accounting.png",
            category="1. Accounting",
            caption="../report/accounting.rst",
            labels={"content": "inputs per dataset (chart)"},
        ),
        quarantine=report(
            "results/report/quarantine.html",
            category="2. Quarantine",
            caption="../report/quarantine.rst",
            labels={"content": "every quarantine and exclusion reason"},
        ),
        policies=report(
            "results/report/policies.html",
            category="3. Policies",
            caption="../report/policies.rst",
            labels={"content": "options and actions counted (table)"},
        ),
        policy_chart=report(
            "results/report/policy-actions.png",
            category="3. Policies",
            caption="../report/policies.rst",
            labels={"content": "DICOM actions per policy (chart)"},
        ),
        blanked=report(
            "results/report/blanked.png",
            category="4. Images",
            caption="../report/blanked.rst",
            labels={"content": "burned-in text: before and after"},
        ),
        ome_zarr=report(
            "results/report/ome-zarr.png",
            category="4. Images",
            caption="../report/ome_zarr.rst",
            labels={"content": "OME-Zarr: every image at every level"},
        ),
        nifti=report(
            "results/report/nifti.png",
            category="4. Images",
            caption="../report/nifti.rst",
            labels={"content": "NIfTI: mid-slices in three planes"},
        ),
        benchmarks=report(
            "results/report/benchmarks.html",
            category="5. Time and memory",
            caption="../report/benchmarks.rst",
            labels={"content": "per rule and per job (table)"},
        ),
        benchmarks_chart=report(
            "results/report/benchmarks.png",
            category="5. Time and memory",
            caption="../report/benchmarks.rst",
            labels={"content": "per rule (chart)"},
        ),
    log:
        "logs/make_report/report.log",
    benchmark:
        "benchmarks/make_report/report.tsv"
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1024,
        runtime=15,
    params:
        out_dir=get_output_dir,
    shell:
        "imagedepot report --summary {input.summary:q} --manifest {input.manifest:q}"
        " --deid-root {input.deid:q} --benchmarks {input.benchmarks:q}"
        " --out-dir {params.out_dir:q} --force > {log:q} 2>&1"
