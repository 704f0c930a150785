//! Writes an MLP with pseudo-random weights as a SavedModel, for trying it with TensorFlow tools:
//! `cargo run -p savedmodel-format --example export_random_mlp -- DIR [784,128,64,10]`
//! then e.g. `saved_model_cli show --all --dir DIR` or `gcloud ai-platform local predict --model-dir DIR …`.

use savedmodel_format::writer::{Activation, DenseLayer, MlpExport, export_mlp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: export_random_mlp DIR [dims]")?);
    let dims: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "784,128,64,10".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut state: u32 = 12345;
    let mut next = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let layers = dims
        .windows(2)
        .enumerate()
        .map(|(i, pair)| DenseLayer {
            kernel: (0..pair[0] * pair[1]).map(|_| next() * 0.2).collect(),
            bias: (0..pair[1]).map(|_| next() * 0.1).collect(),
            in_dim: pair[0],
            out_dim: pair[1],
            activation: if i + 2 < dims.len() {
                Activation::Relu
            } else {
                Activation::Linear
            },
        })
        .collect();
    // Marker-last: saved_model.pb comes last in the list, so it is written last.
    for (relative, bytes) in export_mlp(&MlpExport::new(layers))? {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &bytes)?;
    }
    println!("wrote {}", dir.display());
    Ok(())
}
