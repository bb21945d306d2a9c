"""Face pre-processing shared by the dataset builders and `predict`.

- face: Haar face/eye detection, crop with margin, eye-centre alignment.
- landmarks: dataset landmark sets -> iBUG-68.
- video: streaming video frames, image reading and encoding.
- flow: optical flow (DIS / TV-L1) and the AUNets flow image.
- frames: per-frame record building shared by the real-dataset builders;
  frame_reading (finding, decoding and pairing a job's frames with labels),
  build_runners (worker processes) and build_beam (the Beam path) behind it.
"""

from au_jax.preprocess.face import FaceOptions
from au_jax.preprocess.face import FaceResult
from au_jax.preprocess.face import process_face
from au_jax.preprocess.flow import flow_to_image
from au_jax.preprocess.flow import optical_flow
from au_jax.preprocess.landmarks import to_ibug68
from au_jax.preprocess.video import video_frames
