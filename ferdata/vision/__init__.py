"""Images and faces: decoding (``decode``), detectors (``detectors``), the template warp
(``align``) and the contact sheet (``contact``). numpy, Pillow, OpenCV and onnxruntime are the only
dependencies; OpenCV and onnxruntime are imported inside the functions that use them.
"""
