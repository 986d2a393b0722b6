"""Images and faces: decoding (``decode``: originals, and ``read_crop`` for face crops), writing
(``encode``: the content-addressed crop store), detectors (``detectors``), the template warp
(``align``), masks drawn on crops (``masks``) and the contact sheet (``contact``). numpy, Pillow,
OpenCV and onnxruntime are the only dependencies; OpenCV and onnxruntime are imported inside the
functions that use them.
"""
