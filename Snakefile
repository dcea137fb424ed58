# imagedepot: raw imaging data -> open formats -> de-identified -> FHIR-linked -> staged for deposit.
#
# Output path scheme (all under results/, logs under logs/<rule>/, benchmarks under benchmarks/<rule>/):
#   results/ingest/manifest.json          every input file, grouped into items (trusted zone)
#   results/ingest/items/<item>.json      one item (DICOM series, microscopy image, NIfTI file)
#   results/convert/<item>/               open formats made from the originals (trusted zone)
#   results/deid/<item>/                  de-identified outputs + provenance.json (+ action log)
#   results/leakcheck/<item>.json         leak gate verdict: clean / leak / quarantined
#   results/fhir/<dataset>/               FHIR transaction bundle (only when clean) + status.json
#   results/stage/<destination>/          what leaves: data, bundles, MANIFEST.sha256, summary.json
#   results/summary.json                  found = processed + quarantined + excluded
# Network targets (never in `all`): see rules/deposit.smk.


from snakemake.utils import min_version

min_version("9.5")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/ingest.smk"
include: "rules/convert.smk"
include: "rules/deidentify.smk"
include: "rules/fhir.smk"
include: "rules/stage.smk"
include: "rules/deposit.smk"


rule all:
    default_target: True
    input:
        get_final_output,
