//! S2 (METHOD.md): the performance-prediction search. `predictor` is the
//! LSTM ensemble that scores cells, `rank` the rank correlations that say
//! how well it scores, `progressive` the level-by-level search, and `measure` the one-shot accuracy of a cell from
//! the S1 supernet's shared weights.

pub mod measure;
pub mod paths;
pub mod predictor;
pub mod probe;
pub mod progressive;
pub mod rank;

/// serde's default for switches that are on unless a file says otherwise.
fn yes() -> bool {
    true
}
