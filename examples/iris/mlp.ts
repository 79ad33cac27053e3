/**
 * A multilayer perceptron with one tanh hidden layer and a softmax output, trained by mini-batch gradient
 * descent with momentum on the mean cross-entropy. Written out by hand, loops and all: at 150 rows clarity
 * matters more than speed, and the backward pass is short enough to check against finite differences.
 */
import type { Random } from "./random.js"
import { uniform } from "./random.js"

/** The sizes of the three layers. */
export interface MlpShape {
  readonly inputSize: number
  readonly hiddenSize: number
  readonly classCount: number
}

/**
 * Weights and biases of both layers. Weight matrices are row-major with one row per unit of the layer they
 * feed: `hiddenWeights[h * inputSize + i]` connects input `i` to hidden unit `h`. Gradients and momentum
 * buffers have this same shape.
 */
export interface MlpParameters {
  readonly hiddenWeights: Float64Array
  readonly hiddenBiases: Float64Array
  readonly outputWeights: Float64Array
  readonly outputBiases: Float64Array
}

/** A network: its shape and its current parameters, which training updates in place. */
export interface Mlp extends MlpShape, MlpParameters {}

/** What the forward pass computes for one example. */
export interface Activations {
  readonly hidden: Float64Array
  readonly logits: Float64Array
}

/** The mean loss over a batch and its gradient with respect to every parameter. */
export interface LossAndGradients {
  readonly loss: number
  readonly gradients: MlpParameters
}

/** Mean cross-entropy and the share of correctly classified examples. */
export interface Evaluation {
  readonly loss: number
  readonly accuracy: number
}

/** Plain SGD when `momentum` is 0; otherwise each step keeps that share of the previous one. */
export interface SgdOptions {
  readonly learningRate: number
  readonly momentum: number
}

/** An optimiser's settings and its state: the last update of every parameter. */
export interface Sgd extends SgdOptions {
  readonly velocity: MlpParameters
}

const zeroParameters = (shape: MlpShape): MlpParameters => ({
  hiddenWeights: new Float64Array(shape.hiddenSize * shape.inputSize),
  hiddenBiases: new Float64Array(shape.hiddenSize),
  outputWeights: new Float64Array(shape.classCount * shape.hiddenSize),
  outputBiases: new Float64Array(shape.classCount)
})

/** The four parameter arrays in a fixed order, to walk all parameters alike. */
export const parameterArrays = (parameters: MlpParameters): Array<Float64Array> => [
  parameters.hiddenWeights,
  parameters.hiddenBiases,
  parameters.outputWeights,
  parameters.outputBiases
]

/**
 * A new network with Glorot-uniform weights and zero biases. Scaling the range by both fan-in and fan-out
 * keeps tanh units out of saturation at the start, so the first epochs already learn.
 */
export const initMlp = (shape: MlpShape, random: Random): Mlp => {
  const parameters = zeroParameters(shape)
  const fill = (weights: Float64Array, fanIn: number, fanOut: number) => {
    const limit = Math.sqrt(6 / (fanIn + fanOut))
    for (let index = 0; index < weights.length; index++) weights[index] = uniform(random, -limit, limit)
  }
  fill(parameters.hiddenWeights, shape.inputSize, shape.hiddenSize)
  fill(parameters.outputWeights, shape.hiddenSize, shape.classCount)
  return { ...shape, ...parameters }
}

/** Hidden activations and output logits for one example. */
export const forward = (mlp: Mlp, input: Float64Array): Activations => {
  const hidden = new Float64Array(mlp.hiddenSize)
  for (let unit = 0; unit < mlp.hiddenSize; unit++) {
    let sum = mlp.hiddenBiases[unit]
    for (let feature = 0; feature < mlp.inputSize; feature++) {
      sum += mlp.hiddenWeights[unit * mlp.inputSize + feature] * input[feature]
    }
    hidden[unit] = Math.tanh(sum)
  }

  const logits = new Float64Array(mlp.classCount)
  for (let label = 0; label < mlp.classCount; label++) {
    let sum = mlp.outputBiases[label]
    for (let unit = 0; unit < mlp.hiddenSize; unit++) {
      sum += mlp.outputWeights[label * mlp.hiddenSize + unit] * hidden[unit]
    }
    logits[label] = sum
  }
  return { hidden, logits }
}

/** Softmax of the logits, shifted by their maximum so that large logits cannot overflow `exp`. */
export const softmax = (logits: Float64Array): Float64Array => {
  const largest = Math.max(...logits)
  const exponentials = logits.map((logit) => Math.exp(logit - largest))
  const total = exponentials.reduce((sum, value) => sum + value, 0)
  return exponentials.map((value) => value / total)
}

/** −log softmax(logits)[label], computed as log-sum-exp minus the logit to stay finite for confident mistakes. */
export const crossEntropy = (logits: Float64Array, label: number): number => {
  const largest = Math.max(...logits)
  const logSumExp = largest + Math.log(logits.reduce((sum, logit) => sum + Math.exp(logit - largest), 0))
  return logSumExp - logits[label]
}

/** The index of the largest value; ties go to the lower index. */
const argmax = (values: Float64Array): number => {
  let best = 0
  for (let index = 1; index < values.length; index++) if (values[index] > values[best]) best = index
  return best
}

/** Mean cross-entropy over the batch, and its exact gradient by backpropagation. */
export const lossAndGradients = (
  mlp: Mlp,
  features: ReadonlyArray<Float64Array>,
  labels: ReadonlyArray<number>
): LossAndGradients => {
  const gradients = zeroParameters(mlp)
  const batchSize = features.length
  let loss = 0

  for (let example = 0; example < batchSize; example++) {
    const input = features[example]
    const label = labels[example]
    const { hidden, logits } = forward(mlp, input)
    loss += crossEntropy(logits, label) / batchSize

    // For softmax followed by cross-entropy the gradient at the logits is simply probabilities − one-hot.
    const logitGradient = softmax(logits)
    logitGradient[label] -= 1
    for (let out = 0; out < mlp.classCount; out++) logitGradient[out] /= batchSize

    const hiddenGradient = new Float64Array(mlp.hiddenSize)
    for (let out = 0; out < mlp.classCount; out++) {
      gradients.outputBiases[out] += logitGradient[out]
      for (let unit = 0; unit < mlp.hiddenSize; unit++) {
        gradients.outputWeights[out * mlp.hiddenSize + unit] += logitGradient[out] * hidden[unit]
        hiddenGradient[unit] += mlp.outputWeights[out * mlp.hiddenSize + unit] * logitGradient[out]
      }
    }

    for (let unit = 0; unit < mlp.hiddenSize; unit++) {
      // tanh'(x) = 1 − tanh(x)², and tanh(x) is the activation already at hand.
      const preActivationGradient = hiddenGradient[unit] * (1 - hidden[unit] * hidden[unit])
      gradients.hiddenBiases[unit] += preActivationGradient
      for (let feature = 0; feature < mlp.inputSize; feature++) {
        gradients.hiddenWeights[unit * mlp.inputSize + feature] += preActivationGradient * input[feature]
      }
    }
  }

  return { loss, gradients }
}

/** Mean cross-entropy and accuracy of the network over a whole dataset. */
export const evaluate = (
  mlp: Mlp,
  features: ReadonlyArray<Float64Array>,
  labels: ReadonlyArray<number>
): Evaluation => {
  let loss = 0
  let correct = 0
  features.forEach((input, example) => {
    const { logits } = forward(mlp, input)
    loss += crossEntropy(logits, labels[example])
    if (argmax(logits) === labels[example]) correct++
  })
  return { loss: loss / features.length, accuracy: correct / features.length }
}

/** An optimiser for the given network, starting at rest. */
export const makeSgd = (shape: MlpShape, options: SgdOptions): Sgd => ({
  learningRate: options.learningRate,
  momentum: options.momentum,
  velocity: zeroParameters(shape)
})

/** One descent step: velocity = momentum · velocity − learningRate · gradient, then parameters += velocity. */
export const sgdStep = (mlp: Mlp, sgd: Sgd, gradients: MlpParameters): void => {
  const parameters = parameterArrays(mlp)
  const velocities = parameterArrays(sgd.velocity)
  const gradientArrays = parameterArrays(gradients)
  parameters.forEach((values, array) => {
    const velocity = velocities[array]
    const gradient = gradientArrays[array]
    for (let index = 0; index < values.length; index++) {
      velocity[index] = sgd.momentum * velocity[index] - sgd.learningRate * gradient[index]
      values[index] += velocity[index]
    }
  })
}
