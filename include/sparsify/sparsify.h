/*
 * sparsify — public API of libsparsify. Include this one header.
 *
 *   version.h  SP_VERSION_STRING and its parts
 *   common.h   status codes, errors, dtypes, the tensor descriptor
 *   ckpt.h     checkpoint readers/writers (torch zip/legacy/TorchScript,
 *              safetensors, Hugging Face folders)
 *   prune.h    patterns, mask selection, scopes, schedules
 *   recipe.h   recipes: SparseML / llm-compressor YAML, Markdown, JSON
 *   spz.h      the .spz sparse weight file and compressed-tensors interop
 *   kernels.h  sparse x dense matrix products and their dispatcher
 *   sddmm.h    sampled dense-dense products (sparse weight gradients)
 */
#ifndef SPARSIFY_H
#define SPARSIFY_H

#include "sparsify/version.h"
#include "sparsify/common.h"
#include "sparsify/ckpt.h"
#include "sparsify/prune.h"
#include "sparsify/recipe.h"
#include "sparsify/spz.h"
#include "sparsify/kernels.h"
#include "sparsify/sddmm.h"

#endif
