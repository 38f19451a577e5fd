/*
 * torch_pt.h: read PyTorch `.pt` files (torch.save zip archives) holding a state dict.
 *
 * The archive (libzip) holds `<prefix>/data.pkl`, a pickle, and the raw storages
 * `<prefix>/data/<key>`; the prefix is the archive's single top folder, whatever its name.
 * data.pkl runs through a small, strict interpreter of the pickle subset torch.save writes for
 * a dict of tensors (protocol 2; the protocol-4 framing opcodes are accepted too). Only these
 * globals may appear: collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter(_with_state) and the typed storages torch.<X>Storage; any other
 * global or opcode is SAE_EUNSUPPORTED naming it, so nothing in a file can run code.
 *
 * Result: every top-level key whose value is a tensor becomes a sae_tensor_info: a dense
 * row-major view into the storage when the tensor is contiguous, else a dense copy (any strides
 * within the storage are accepted: dictionary_learning saves transposed views such as
 * encoder.weight [F, d] with stride [1, F]). The file object owns all of it. The simple
 * non-tensor values (str, int, and the str / int entries of a nested dict) can be read by key.
 *
 * Everything is bounded (pickle size, objects, stack, marks, memo, string lengths, storages) and
 * checked: a malformed file is SAE_EFORMAT with a message naming the file and the problem. The
 * storages' compressed sizes add up to at most the archive's size (entries cannot share their
 * bytes), so what a file inflates to is at most ~1000 times its size.
 * A file object is immutable after sae__pt_open and may be read from several threads.
 */
#ifndef SAE_TORCH_PT_H
#define SAE_TORCH_PT_H

#include "io_internal.h"

typedef struct sae__pt_file sae__pt_file;

/* Open and interpret a .pt file; everything it holds is read into memory from allocator `a`
 * (NULL: the default). Returns SAE_OK, SAE_ENOTFOUND (no such file), SAE_EIO, SAE_EFORMAT
 * (not a torch zip archive, malformed pickle, storage missing or of the wrong size, a tensor
 * reaching past its storage, top-level object not a dict, duplicate keys, ...),
 * SAE_EUNSUPPORTED (an opcode or global outside the subset, a legacy non-zip torch file,
 * big-endian data, more than SAE_MAX_DIMS dimensions) or SAE_ENOMEM. */
sae_status sae__pt_open(sae__pt_file **out, const char *path, const sae_allocator *a);

/* Free everything. Accepts NULL. */
void sae__pt_close(sae__pt_file *f);

/* The top-level tensors in the order of the dict, named by their keys. The views, names and
 * `origin` (the path) are borrowed from `f`. */
sae__tensor_set sae__pt_tensors(const sae__pt_file *f);

/* The path the file was opened with (for messages). */
const char *sae__pt_origin(const sae__pt_file *f);

/* Whether the top-level dict has `key` (whatever its value). */
bool sae__pt_has_key(const sae__pt_file *f, const char *key);

/* The string value of top-level `key`, or with `subkey` non-NULL, of entry `subkey` of the dict
 * that is the value of `key` (e.g. "activation_state_dict", "postact_fn"). NULL when absent or
 * not a string. Borrowed from `f`. */
const char *sae__pt_get_string(const sae__pt_file *f, const char *key, const char *subkey);

/* The int value of top-level `key` (or of `key`.`subkey`, as above). SAE_OK; SAE_ENOTFOUND
 * when absent; SAE_EFORMAT when present but not an int (bool is not an int). The message of an
 * error names the file and the key. */
sae_status sae__pt_get_int(const sae__pt_file *f, const char *key, const char *subkey,
                           int64_t *out);

#endif /* SAE_TORCH_PT_H */
