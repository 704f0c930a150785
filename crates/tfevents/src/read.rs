//! Reading event files back: for tests, tools and checks of what a run wrote. TensorBoard itself
//! is the reader that matters; this one exists so Rust code can inspect a run without Python.

use prost::Message;

use crate::TfEventsError;
use crate::proto::{Event, event, summary_value};
use crate::record::read_records;

/// One scalar point, whichever of TensorBoard's scalar encodings carried it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub tag: String,
    pub step: i64,
    pub wall_time: f64,
    pub value: f32,
}

/// Every event in the bytes of an event file, checksums verified. `file` names it in errors.
pub fn read_events(bytes: &[u8], file: &str) -> Result<Vec<Event>, TfEventsError> {
    read_records(bytes, file)?
        .into_iter()
        .enumerate()
        .map(|(index, data)| {
            Event::decode(data).map_err(|source| TfEventsError::NotAnEvent {
                file: file.to_string(),
                index,
                source,
            })
        })
        .collect()
}

/// The scalars among `events`, in file order: `simple_value`s, and rank-0 `DT_FLOAT` tensors
/// with one `float_val` or a 4-byte `tensor_content` — the encodings TensorBoard plots. Other
/// values (images, histograms, strings) are skipped.
pub fn scalars(events: &[Event]) -> Vec<Scalar> {
    let mut found = Vec::new();
    for event in events {
        let Some(event::What::Summary(summary)) = &event.what else {
            continue;
        };
        for value in &summary.value {
            let number = match &value.value {
                Some(summary_value::Value::SimpleValue(number)) => Some(*number),
                Some(summary_value::Value::Tensor(tensor)) => {
                    let rank_zero = tensor
                        .tensor_shape
                        .as_ref()
                        .is_none_or(|shape| shape.dim.is_empty());
                    if tensor.dtype != 1 || !rank_zero {
                        None
                    } else if let [number] = tensor.float_val[..] {
                        Some(number)
                    } else {
                        <[u8; 4]>::try_from(tensor.tensor_content.as_slice())
                            .ok()
                            .map(f32::from_le_bytes)
                    }
                }
                None => None,
            };
            if let Some(value_number) = number {
                found.push(Scalar {
                    tag: value.tag.clone(),
                    step: event.step,
                    wall_time: event.wall_time,
                    value: value_number,
                });
            }
        }
    }
    found
}
