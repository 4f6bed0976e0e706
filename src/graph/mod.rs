//! Graphs of the engine's ops: the IR, reverse-mode autodiff, the memory
//! planner, and the recorded step that replays one command encoder per step.

pub mod planner;
