"""What the CTC models shipped as ONNX files share: reading the graph through the ONNX path
(:func:`nntm.onnxio.read_onnx`, the tensors and names EncoderApp sees), running a
reconstructed copy in onnxruntime, and importance maps through the public
:func:`nntm.calibrate_onnx.calibrate_onnx` (the adapter only supplies the inputs and the
scored output).

The CE codes an ONNX adapter's tensors with the graph's consumers, so roles come from the
structure as for ``EncoderApp -i model.onnx`` (:meth:`OnnxModelAdapter.graph_consumers`); the
graph itself (the container unit of a ``.onnx`` stream, a few hundred bytes to a few KB) is
not counted in the CE rate, as NNCodec does not carry one.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from nntm.ce.models.base import ModelAdapter, check_tensors, find_package_file

__all__ = ["ORT_THREADS", "OnnxModelAdapter"]

ORT_THREADS = 1
"""onnxruntime threads per evaluation (CEApp --Jobs 2 runs two at once on 2 cores)."""


class OnnxModelAdapter(ModelAdapter):
    """A CTC model read from an ONNX file inside an installed package."""

    package: ClassVar[str]
    """The package that ships the file (found without importing it)."""

    model_file: ClassVar[tuple[str, ...]]
    """The file's path inside the package."""

    calibration_output: ClassVar[str] = "mse"
    """What the sensitivity maps stand for (``"mse"``, ``"kl"``), see :meth:`scored`."""

    def __init__(self) -> None:
        self._tensors: dict[str, np.ndarray] | None = None
        self._template: bytes | None = None
        self._reference: list[np.ndarray] | None = None

    def model_path(self) -> pathlib.Path | None:
        """Where the ONNX file is (``None``: not installed)."""
        return find_package_file(self.package, *self.model_file)

    def required_files(self) -> dict[str, pathlib.Path | None]:
        return {"/".join((self.package, *self.model_file)): self.model_path()}

    def load(self) -> dict[str, np.ndarray]:
        """The graph's float tensors under EncoderApp's names (:func:`nntm.onnxio.read_onnx`)."""
        if self._tensors is None:
            self.ensure_available()
            from nntm.onnxio import read_onnx

            self._tensors, self._template = read_onnx(str(self.model_path()))
        return {name: array.copy() for name, array in self._tensors.items()}

    def template(self) -> bytes:
        """The graph without its float tensors' data (nntm.onnxio)."""
        if self._template is None:
            self.load()
        assert self._template is not None
        return self._template

    def graph_consumers(self) -> dict[str, list[tuple[str, int]]]:
        """Name -> (op type, input index) of each node that reads the tensor (roles)."""
        from nntm.onnxio import graph_consumers

        return graph_consumers(self.template())

    def structural_names(self) -> tuple[str, ...]:
        """Tensors whose role (nntm.roles, from the graph) is structural: Resize scales,
        Pad values, ... (NNTM carries them exactly by default)."""
        cached: tuple[str, ...] | None = getattr(self, "_structural", None)
        if cached is None:
            from nntm.roles import Role, derive_roles

            found = derive_roles(self.load(), self.graph_consumers())
            cached = tuple(name for name, role in found.items() if role is Role.STRUCTURAL)
            self._structural = cached
        return cached

    def with_structure(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``tensors`` with the structural ones put back as in the original.

        NNCodec codes a float Resize scale like any 1-D tensor (step 2.3e-6), which turns
        ``2.0`` into ``1.9999..``, changes the size the layer produces and makes onnxruntime
        refuse the graph; the CE evaluates every codec's points with the original structural
        tensors (a few values that NNTM carries exactly anyway), which favours the anchor.
        """
        if self._tensors is None:
            self.load()
        assert self._tensors is not None
        fixed = dict(tensors)
        for name in self.structural_names():
            if name in fixed:
                fixed[name] = self._tensors[name]
        return fixed

    def model_bytes(self, tensors: Mapping[str, np.ndarray]) -> bytes:
        """The ONNX file holding ``tensors`` (checked against the original's names, shapes)."""
        from nntm.onnxio import model_bytes

        if self._tensors is None:
            self.load()
        assert self._tensors is not None
        check_tensors(self.name, tensors, self._tensors)
        cast = {name: np.asarray(value).astype(self._tensors[name].dtype, copy=False)
                for name, value in tensors.items()}
        return model_bytes(cast, self.template())

    def session(self, tensors: Mapping[str, np.ndarray]) -> Any:
        """An onnxruntime session of the model holding ``tensors``."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = ORT_THREADS
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return onnxruntime.InferenceSession(self.model_bytes(tensors), options,
                                            providers=["CPUExecutionProvider"])

    def feeds(self, inputs: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """One feed per sample (the ONNX graphs here take one sample at a time)."""
        first = next(iter(inputs.values()))
        return [{name: value[i : i + 1] for name, value in inputs.items()}
                for i in range(first.shape[0])]

    def outputs(self, tensors: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray],
                name: str) -> list[np.ndarray]:
        """Output ``name`` of the model ``tensors`` on each sample of ``inputs`` (float64)."""
        session = self.session(self.with_structure(tensors))
        return [np.asarray(session.run([name], feed)[0], dtype=np.float64)
                for feed in self.feeds(inputs)]

    def scored(self) -> str | Callable[[Any], Any]:
        """The ``output`` argument of :func:`~nntm.calibrate_onnx.calibrate_onnx`."""
        return self.calibration_output

    def input_channel_importance(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from nntm.calibrate_onnx import calibrate_onnx

        return calibrate_onnx(self.model_bytes(tensors), self.calibration_inputs(),
                              kind="activation", threads=2)

    def output_importance(
        self,
        tensors: Mapping[str, np.ndarray],
        probes: int = 2,
        seed: int = 0,
        samples: int | None = None,
        form: str = "factored",
    ) -> dict[str, np.ndarray]:
        """Output-sensitivity maps through :func:`nntm.calibrate_onnx.calibrate_onnx`."""
        from nntm.calibrate_onnx import calibrate_onnx

        return calibrate_onnx(self.model_bytes(tensors), self.calibration_inputs(),
                              kind="sensitivity", output=self.scored(), probes=probes,
                              seed=seed, form=form, samples=samples, threads=2)

    @staticmethod
    def stack(images: Sequence[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.stack(images).astype(np.float32))
