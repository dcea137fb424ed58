# imagedepot: raw imaging data -> open formats -> de-identified -> FHIR-linked -> staged for deposit.
#
# Output path scheme (all under results/, logs under logs/<rule>/, benchmarks under benchmarks/<rule>/).
# A folder output X/ is tracked by its marker X.tree.json (every file with size and SHA-256; on
# object storage the package uploads the folder itself: src/imagedepot/storage.py).
#   results/config/<view>.json               the config sections a rule reads (its --config file)
#   results/ingest/manifest.json             every input file, grouped into items and batches
#   results/convert/batch-NNNN/<item>/       open formats made from the originals (trusted zone)
#   results/deid/batch-NNNN/<item>/          de-identified outputs + provenance.json (+ action log)
#   results/leakcheck/batch-NNNN/<item>.json leak gate verdict: clean / leak / quarantined
#   results/fhir/<dataset>/bundle.json       FHIR transaction bundle (only when clean) + status
#   results/bids/                            BIDS-like tree of the de-identified NIfTI
#   results/stage/<destination>/             what leaves: data, bundles, MANIFEST.sha256, summary.json
#   results/bia/<destination>/               BioImage Archive packages (bia destinations)
#   results/summary.json                     found = processed + quarantined + excluded
#   results/report/                          run report pieces (trusted zone, never staged);
#                                            `snakemake --report report.html` makes the report
# Network targets (never in `all`): see rules/deposit.smk.


from snakemake.utils import min_version

min_version("9.5")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/config.smk"
include: "rules/ingest.smk"
include: "rules/convert.smk"
include: "rules/deidentify.smk"
include: "rules/fhir.smk"
include: "rules/stage.smk"
include: "rules/deposit.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output,
