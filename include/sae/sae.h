/**
 * @file sae.h
 * @brief Umbrella header: includes every public header of libsae.
 *
 * @mainpage libsae
 * libsae is a C library for sparse-autoencoder interpretability of language models:
 * dictionaries of every common architecture (@ref dict), fast dense and sparse encoders
 * (@ref encoder), the files of SAELens, sparsify, dictionary_learning and OpenAI (@ref io,
 * @ref safetensors), streams of activations for training and evaluation (@ref source), synthetic
 * ground-truth data and its metrics (@ref synth), orthogonality of decoders (@ref ortho),
 * training (@ref trainer), evaluation (@ref eval),
 * language models reached through callback tables (@ref host), their activations captured,
 * streamed into training and spliced back to measure the loss recovered (@ref capture), feature
 * circuits discovered and evaluated through them (@ref graph), and the core utilities they build
 * on (@ref core).
 */
#ifndef SAE_SAE_H
#define SAE_SAE_H

#include "capture.h"
#include "core.h"
#include "dict.h"
#include "encoder.h"
#include "eval.h"
#include "graph.h"
#include "host.h"
#include "io.h"
#include "ortho.h"
#include "patch.h"
#include "safetensors.h"
#include "source.h"
#include "synth.h"
#include "supervised.h"
#include "trainer.h"

#endif /* SAE_SAE_H */
