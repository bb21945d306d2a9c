"""Face pre-processing shared by the dataset builders and `predict`.

- face: Haar face/eye detection, crop with margin, eye-centre alignment.
- landmarks: dataset landmark sets -> iBUG-68.
- video: streaming video frames, image reading and encoding.
- flow: optical flow (DIS / TV-L1) and the AUNets flow image.
- frames: per-frame record building shared by the real-dataset builders;
  frame_reading (finding, decoding and pairing a job's frames with labels),
  build_runners (worker processes) and build_beam (the Beam path) behind it.
"""
