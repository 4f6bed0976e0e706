//! Export of trained models to formats other runtimes read. Today: ONNX
//! (`onnx`), the evaluation graph of a model directory mapped node by node
//! onto standard ONNX operators, with the data normalization inside.

pub mod onnx;
