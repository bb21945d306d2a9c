"""au_jax: facial Action Unit detection in JAX/Flax."""

import setuptools

setuptools.setup(
    name='au_jax',
    version='0.1.0',
    description='Facial Action Unit detectors (DRML, LP-Net, IdenNet, CAUD, '
                'AUNets) in JAX/Flax linen.',
    # configs/ ships too, so `au_jax.get_config('drml:test')` works from an
    # installed package as from the checkout.
    packages=setuptools.find_packages(include=['au_jax', 'au_jax.*',
                                               'configs',
                                               'data_builders',
                                               'data_builders.*']),
    package_data={'data_builders': ['*/README.md', '*/CITATIONS.bib',
                                    '*/checksums.tsv']},
    # jax, flax, grain and orbax-checkpoint need Python 3.11 or newer.
    python_requires='>=3.11',
    classifiers=[
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Operating System :: POSIX :: Linux',
        'Intended Audience :: Science/Research',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
    install_requires=[
        # 0.10.2 (last for Python 3.11) and 0.11.x (Python 3.12; the GPU
        # image's 0.11.2 ran the models unchanged). 0.12 is not yet tested.
        'jax>=0.7,<0.12',
        'flax>=0.11,<0.13',
        'optax>=0.2.4,<0.3',
        'orbax-checkpoint>=0.11,<0.13',
        'tensorflow-datasets>=4.9.8,<4.10',
        'array-record>=0.7,<0.9',
        'grain>=0.2.10,<0.3',
        'ml-collections>=1.0,<1.2',
        'clu>=0.0.12,<0.1',
        'absl-py>=2.1,<3',
        'numpy>=1.26,<3',
        'pillow>=10,<14',
        'scipy>=1.11,<2',
        'opencv-contrib-python-headless>=4.9,<5',
        'tensorboardX>=2.6,<3',
        'tqdm>=4.66,<5',
        'importlib_resources>=6',
        'matplotlib>=3.8,<4',
        'pandas>=2,<4',  # predict.predict returns a DataFrame.
    ],
    extras_require={
        # NVIDIA driver >= 525 (CUDA 12); 'cuda13' for driver >= 580.
        'gpu': ['jax[cuda12]>=0.7,<0.12'],
        'cuda13': ['jax[cuda13]>=0.10,<0.12'],
        'tf': ['tensorflow>=2.17', 'tensorboard>=2.17'],
        # Viewing the event files (`tensorboard --logdir=workdir`) needs the
        # tensorboard package only, not TensorFlow; au_jax writes them with
        # tensorboardX.
        'tensorboard': ['tensorboard>=2.17'],
        # Face detection with iBUG-68 landmarks (au_jax/preprocess/
        # landmark_detector.py): dlib's binary wheels and the model files
        # shipped inside face-recognition-models (nothing downloaded at run
        # time); without them predict and the builders fall back to Haar.
        'faces': ['dlib-bin>=20.0.1,<21', 'face-recognition-models==0.3.0'],
        'dev': ['pytest>=8,<10', 'pytest-xdist>=3.5,<4',
                'scikit-learn>=1.4,<2',
                # Real photographs for the face detector's tests.
                'scikit-image>=0.22,<1',
                'dlib-bin>=20.0.1,<21', 'face-recognition-models==0.3.0'],
        # Dataset builds on Apache Beam (tests/test_beam_builds.py; README
        # "Scaling out"). 2.77 is the tested one (it holds protobuf < 7,
        # pyarrow < 26, pillow < 13, all within the pins above).
        'beam': ['apache-beam>=2.77,<2.78'],
    },
)
