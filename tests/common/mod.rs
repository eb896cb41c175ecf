//! Helpers shared by the integration tests.

/// The shipped rnn weights file without `bits.mix` (format-spec §6.6b): the earlier,
/// table-only weights, byte for byte.
pub fn rnn_table_only_weights() -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(lic::model::weights::EMBEDDED_RNN).unwrap();
    safetensors::serialize(
        st.tensors().into_iter().filter(|(n, _)| n != "bits.mix"),
        None,
    )
    .unwrap()
}
