"""Text burned into pixel data: render, detect, recognise, decide, blank and verify.

This package sits below both de-identification (:mod:`imagedepot.deid`) and the leak gate
(:mod:`imagedepot.leakcheck`): both use the same detector, so what de-identification blanked is
checked again, independently, on every staged image.

* :mod:`~imagedepot.pixeltext.render` turns DICOM pixel data into 8-bit images for OCR (modality
  LUT, a VOI-windowed and a full-range rendering, MONOCHROME1 inverted, palette and colour).
* :mod:`~imagedepot.pixeltext.engines` loads the OCR engines from installed packages only:
  RapidOCR's PP-OCR ONNX detector and recogniser (from the ``rapidocr-onnxruntime`` wheel) and
  Tesseract 5 (the ``tesseract`` program); nothing is fetched at run time.
* :mod:`~imagedepot.pixeltext.detect` finds text regions: a cheap screen finds candidate areas,
  both engines read them (tiled at full resolution, small text upscaled), boxes are united.
* :mod:`~imagedepot.pixeltext.identifiers` says which recognised text is an identifier (names,
  IDs, dates in the usual renderings, fuzzy) and which is an allowed token.
* :mod:`~imagedepot.pixeltext.dicom` applies the policy (``blank_all``, ``blank_phi``,
  ``quarantine``) to a pydicom data set, re-checks the result and writes thumbnails.
* :mod:`~imagedepot.pixeltext.series` lists the series of OME-Zarr stores and OME-TIFF files,
  tells the auxiliary ones (slide label, macro, thumbnail...) and reads their pixels as planes.
* :mod:`~imagedepot.pixeltext.planes` reads plain planes of channels (the slide label, macro and
  thumbnail series of microscopy outputs, :mod:`imagedepot.deid.auxiliary`) with the same engines.
"""
