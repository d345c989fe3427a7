//! Autodiff: the backward step.
use super::BiasGeluBackend;
use burn::backend::autodiff::checkpoint::retro_forward::RetroForward;
use burn::backend::autodiff::checkpoint::state::BackwardStates;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::{Backend, tensor::FloatTensor};
use core::marker::PhantomData;

/// Recomputes the forward output during backward when gradient checkpointing dropped it.
#[derive(Debug)]
struct RetroBiasGelu<B: Backend> {
    x_id: NodeId,
    bias_id: NodeId,
    _backend: PhantomData<B>,
}

impl<B: BiasGeluBackend> RetroForward for RetroBiasGelu<B> {
    fn forward(&self, states: &mut BackwardStates, out_node: NodeId) {
        let x = states.get_state::<FloatTensor<B>>(&self.x_id);
        let bias = states.get_state::<FloatTensor<B>>(&self.bias_id);
        states.save(out_node, B::bias_gelu(x, bias));
    }
}

/// Backward step of `gelu(x + bias)`: parents `[x, bias]`, state the checkpointed ids of both.
#[derive(Debug)]
struct BiasGeluBackward;

impl<B: BiasGeluBackend> Backward<B, 2> for BiasGeluBackward {
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_id, bias_id) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
        let bias: FloatTensor<B> = checkpointer.retrieve_node_output(bias_id);

        let (dx, dbias) = B::bias_gelu_backward(x, bias, grad);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, dbias);
        }
    }
}

impl<B: BiasGeluBackend, C: CheckpointStrategy> BiasGeluBackend for Autodiff<B, C> {
    fn bias_gelu(x: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        // Memory bound, as Burn marks its elementwise ops: with balanced checkpointing the output
        // is recomputed from `x` and `bias` instead of being kept.
        match BiasGeluBackward
            .prepare::<C>([x.node(), bias.node()])
            .memory_bound()
            .retro_forward(RetroBiasGelu::<B> {
                x_id: x.id(),
                bias_id: bias.id(),
                _backend: PhantomData,
            })
            .parents([&x, &bias])
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&bias));
                let output = B::bias_gelu(x.primitive().clone(), bias.primitive().clone());
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::bias_gelu(x.into_primitive(), bias.into_primitive()))
            }
        }
    }
    // `bias_gelu_backward` keeps the default body: Burn's differentiable ops on `Autodiff<B, C>`.
}
