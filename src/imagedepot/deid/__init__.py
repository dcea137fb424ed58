"""De-identification: policies, pseudonyms, DICOM / NIfTI / OME metadata cleaning."""
