"""Synthetic test data made by code: fake identifiers only, released as CC0.

* :mod:`~imagedepot.synthetic.burned_in` writes DICOM images of several modalities with fake
  patient text burned into the pixel data, with exact ground-truth boxes, for testing and
  benchmarking the burned-in text de-identifier (:mod:`imagedepot.pixeltext`).
"""
