//! Reading and restoring the momentum slots, for checkpoints (`training` crate). Kept out of
//! `mod.rs` so the engine's hot code stays as it was; it uses the same unpadded Keras layout
//! as [`CpuEngine::weights`].

use super::CpuEngine;

impl CpuEngine {
    /// Momentum accumulators in Keras layout: `([in, out] kernel slot, [out] bias slot)` per
    /// layer, padding removed.
    pub(crate) fn momentum(&self) -> Vec<crate::LayerParams> {
        let mut fan_in = self.input_dim;
        self.layers
            .iter()
            .map(|l| {
                let accum = l.accum.as_slice();
                let mut kernel = Vec::with_capacity(fan_in * l.n);
                for r in 0..fan_in {
                    kernel.extend((0..l.n).map(|c| accum[l.index(r, c)]));
                }
                fan_in = l.n;
                (kernel, l.bias_accum[..l.n].to_vec())
            })
            .collect()
    }

    /// Overwrites the momentum accumulators with `slots` (shapes checked by the caller against
    /// the configuration, as for [`CpuEngine::new`]). Padding stays zero.
    pub(crate) fn set_momentum(&mut self, slots: &[crate::LayerParams]) {
        let mut fan_in = self.input_dim;
        for (layer, (kernel, bias)) in self.layers.iter_mut().zip(slots) {
            let n = layer.n;
            for (r, src) in kernel.chunks_exact(n).take(fan_in).enumerate() {
                for (c, &v) in src.iter().enumerate() {
                    let at = layer.index(r, c);
                    layer.accum.as_mut_slice()[at] = v;
                }
            }
            layer.bias_accum[..n].copy_from_slice(&bias[..n]);
            fan_in = n;
        }
    }
}
