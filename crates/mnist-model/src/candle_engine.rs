//! The candle engine: the same step as the CPU engine, written with candle tensor ops so it runs
//! on any candle device (CUDA in particular).
//!
//! The backward pass is explicit rather than autograd: it is four lines per layer, it keeps the
//! update exactly TF's `ApplyMomentum`, and it avoids building a graph each step. The small
//! per-row loss work (softmax, cross-entropy, arg-max) runs on the host with the same code as
//! the CPU engine — the host needs the per-step loss and accuracy for the progress bar anyway —
//! and dropout masks are generated on the host from the same ChaCha streams, so the two engines
//! follow the same trajectory up to floating-point rounding.

use candle_core::{DType, Device, Tensor};

use crate::loss::cross_entropy_row;
use crate::metrics::BatchMetrics;
use crate::seeds::DropoutMasks;
use crate::{ModelError, SgdMomentum};

struct CandleLayer {
    fan_in: usize,
    units: usize,
    /// `[fan_in, units]`, Keras layout.
    w: Tensor,
    b: Tensor,
    accum_w: Tensor,
    accum_b: Tensor,
}

pub(crate) struct CandleEngine {
    device: Device,
    layers: Vec<CandleLayer>,
    dropout: Option<DropoutMasks>,
}

fn ctx(context: &'static str) -> impl FnOnce(candle_core::Error) -> ModelError {
    ModelError::candle(context)
}

impl CandleEngine {
    pub(crate) fn new(
        device: &Device,
        dims: &[(usize, usize)],
        kernels: &[Vec<f32>],
        biases: &[Vec<f32>],
        dropout: Option<DropoutMasks>,
    ) -> Result<Self, ModelError> {
        let mut layers = Vec::with_capacity(dims.len());
        for ((&(fan_in, units), kernel), bias) in dims.iter().zip(kernels).zip(biases) {
            layers.push(CandleLayer {
                fan_in,
                units,
                w: Tensor::from_slice(kernel, (fan_in, units), device)
                    .map_err(ctx("uploading a kernel"))?,
                b: Tensor::from_slice(bias, units, device).map_err(ctx("uploading a bias"))?,
                accum_w: Tensor::zeros((fan_in, units), DType::F32, device)
                    .map_err(ctx("allocating momentum slots"))?,
                accum_b: Tensor::zeros(units, DType::F32, device)
                    .map_err(ctx("allocating momentum slots"))?,
            });
        }
        Ok(CandleEngine {
            device: device.clone(),
            layers,
            dropout,
        })
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    fn input_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.fan_in)
    }

    /// Forward pass; returns every layer's output (hidden activations after ReLU and dropout,
    /// then the logits). `masks` holds one `[m, units]` multiplier tensor per hidden layer.
    fn forward(&self, x: &Tensor, masks: Option<&[Tensor]>) -> candle_core::Result<Vec<Tensor>> {
        let last = self.layers.len() - 1;
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let input = outputs.last().unwrap_or(x);
            let pre = input.matmul(&layer.w)?.broadcast_add(&layer.b)?;
            let out = if l == last {
                pre
            } else {
                let act = pre.relu()?;
                match masks {
                    Some(masks) => act.mul(&masks[l])?,
                    None => act,
                }
            };
            outputs.push(out);
        }
        Ok(outputs)
    }

    pub(crate) fn train_step(
        &mut self,
        x: &[f32],
        labels: &[u8],
        optimizer: SgdMomentum,
        step: u64,
    ) -> Result<BatchMetrics, ModelError> {
        let m = labels.len();
        let x = Tensor::from_slice(x, (m, self.input_dim()), &self.device)
            .map_err(ctx("uploading a batch"))?;
        let last = self.layers.len() - 1;
        let masks = match &self.dropout {
            Some(dropout) => {
                let mut masks = Vec::with_capacity(last);
                for (l, layer) in self.layers[..last].iter().enumerate() {
                    let mut host = vec![0f32; m * layer.units];
                    for (r, row) in host.chunks_exact_mut(layer.units).enumerate() {
                        dropout.fill_row(l, step, r, layer.units, row);
                    }
                    masks.push(
                        Tensor::from_vec(host, (m, layer.units), &self.device)
                            .map_err(ctx("uploading dropout masks"))?,
                    );
                }
                Some(masks)
            }
            None => None,
        };
        let outputs = self
            .forward(&x, masks.as_deref())
            .map_err(ctx("training forward pass"))?;

        let classes = self.layers[last].units;
        let logits: Vec<f32> = outputs[last]
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(ctx("reading logits"))?;
        let mut grad = vec![0f32; m * classes];
        let mut probs = [0f32; crate::MAX_CLASSES];
        let mut metrics = BatchMetrics {
            examples: m,
            ..BatchMetrics::default()
        };
        let inv_m = 1.0 / m as f32;
        for ((z, g), &label) in logits
            .chunks_exact(classes)
            .zip(grad.chunks_exact_mut(classes))
            .zip(labels)
        {
            let label = usize::from(label);
            let outcome = cross_entropy_row(z, label, &mut probs, Some((g, inv_m)));
            metrics.loss_sum += f64::from(outcome.loss);
            metrics.correct += usize::from(outcome.class == label);
        }
        let dz = Tensor::from_vec(grad, (m, classes), &self.device)
            .map_err(ctx("uploading the loss gradient"))?;
        self.backward(&x, &outputs, dz, optimizer)
            .map_err(ctx("training backward pass"))?;
        Ok(metrics)
    }

    fn backward(
        &mut self,
        x: &Tensor,
        outputs: &[Tensor],
        mut dy: Tensor,
        optimizer: SgdMomentum,
    ) -> candle_core::Result<()> {
        let scale = f64::from(self.dropout.map_or(1.0, |d| d.scale));
        let lr = f64::from(optimizer.learning_rate);
        let momentum = f64::from(optimizer.momentum);
        for l in (0..self.layers.len()).rev() {
            let input = if l == 0 { x } else { &outputs[l - 1] };
            let grad_w = input.t()?.matmul(&dy)?;
            let grad_b = dy.sum(0)?;
            // Gradient for the layer below, with its ReLU and dropout derivative; computed with
            // this layer's weights *before* they are updated, as TF does.
            let next_dy = if l > 0 {
                let dx = dy.matmul(&self.layers[l].w.t()?)?;
                let active = input.gt(0f64)?;
                Some(active.where_cond(&dx.affine(scale, 0.0)?, &dx.zeros_like()?)?)
            } else {
                None
            };
            let layer = &mut self.layers[l];
            layer.accum_w = layer.accum_w.affine(momentum, 0.0)?.add(&grad_w)?;
            layer.w = layer.w.sub(&layer.accum_w.affine(lr, 0.0)?)?;
            layer.accum_b = layer.accum_b.affine(momentum, 0.0)?.add(&grad_b)?;
            layer.b = layer.b.sub(&layer.accum_b.affine(lr, 0.0)?)?;
            if let Some(next) = next_dy {
                dy = next;
            }
        }
        Ok(())
    }

    /// Logits `[rows, num_classes]` with dropout off.
    pub(crate) fn logits(&self, x: &[f32]) -> Result<Vec<f32>, ModelError> {
        let rows = x.len() / self.input_dim().max(1);
        let x = Tensor::from_slice(x, (rows, self.input_dim()), &self.device)
            .map_err(ctx("uploading features"))?;
        let outputs = self
            .forward(&x, None)
            .map_err(ctx("inference forward pass"))?;
        outputs
            .last()
            .map(|t| t.flatten_all().and_then(|t| t.to_vec1()))
            .transpose()
            .map_err(ctx("reading logits"))
            .map(Option::unwrap_or_default)
    }

    pub(crate) fn weights(&self) -> Result<Vec<crate::LayerParams>, ModelError> {
        self.layers
            .iter()
            .map(|l| {
                let kernel =
                    l.w.flatten_all()
                        .and_then(|t| t.to_vec1())
                        .map_err(ctx("reading a kernel"))?;
                let bias = l.b.to_vec1().map_err(ctx("reading a bias"))?;
                Ok((kernel, bias))
            })
            .collect()
    }

    pub(crate) fn momentum(&self) -> Result<Vec<crate::LayerParams>, ModelError> {
        self.layers
            .iter()
            .map(|l| {
                let kernel = l
                    .accum_w
                    .flatten_all()
                    .and_then(|t| t.to_vec1())
                    .map_err(ctx("reading a momentum slot"))?;
                let bias = l
                    .accum_b
                    .to_vec1()
                    .map_err(ctx("reading a momentum slot"))?;
                Ok((kernel, bias))
            })
            .collect()
    }

    /// Overwrites the momentum slots (shapes checked by the caller).
    pub(crate) fn set_momentum(&mut self, slots: &[crate::LayerParams]) -> Result<(), ModelError> {
        for (layer, (kernel, bias)) in self.layers.iter_mut().zip(slots) {
            layer.accum_w = Tensor::from_slice(kernel, (layer.fan_in, layer.units), &self.device)
                .map_err(ctx("uploading a momentum slot"))?;
            layer.accum_b = Tensor::from_slice(bias, layer.units, &self.device)
                .map_err(ctx("uploading a momentum slot"))?;
        }
        Ok(())
    }
}
