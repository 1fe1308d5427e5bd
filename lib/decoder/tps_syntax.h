/* The syntax elements of a QUANTIZED tensor parameter set (docs/bitstream.md 3.4), one row
 * each, in bitstream order: the stream reader's parser and its syntax struct are made from
 * this table, and tests/test_cdec.py checks it against the syntax table of the spec.
 *
 *   X(element, descriptor, minor, present, lo, hi)
 *
 * element     the name in docs/bitstream.md (also the field of nntm_tps_syntax)
 * descriptor  U1, U4, U8 (u(n)), UE (ue(v)), SE (se(v)), MD5 (16 x b(8): ref_md5_byte[])
 * minor       the format 1.minor that brought it (0: 1.0)
 * present     its presence condition, over f (tool_flags) and e (the elements read so far)
 * lo, hi      its range (values outside refuse the stream), also over e, minor, tensor_id
 *             and nsig (the number of signal types)
 *
 * A new element of a QUANTIZED TPS is one row here and its use in stream_reader.c. */
#ifndef NNTM_DECODER_TPS_SYNTAX_H
#define NNTM_DECODER_TPS_SYNTAX_H

#include <stdint.h>

#define NNTM_TOOL_CODING_TREE (1u << 0)
#define NNTM_TOOL_SIGNAL_TYPES (1u << 1)
#define NNTM_TOOL_DEP_QUANT (1u << 2)
#define NNTM_TOOL_INTER_PRED (1u << 3)
#define NNTM_TOOL_CLUSTER (1u << 5)
#define NNTM_TOOL_INTRA_PRED (1u << 6)
#define NNTM_TOOL_PROB_WINDOW (1u << 7)
#define NNTM_TOOL_DQ_8STATES (1u << 8)
#define NNTM_TOOL_SUFFIX_CTX (1u << 9)
#define NNTM_TOOL_DQ_32STATES (1u << 10)
#define NNTM_TOOL_ROW_PRED (1u << 11)
#define NNTM_TOOL_INTEGRITY (1u << 12)
#define NNTM_TOOL_CONTAINER (1u << 13)
#define NNTM_TOOL_ENTRY_POINTS (1u << 14)

#define NNTM_TPS_TREE(f, e) (((f) & NNTM_TOOL_CODING_TREE) && (e)->tree_partition_type)
#define NNTM_TPS_PRED(f, e) (((f) & NNTM_TOOL_INTER_PRED) && (e)->pred_mode)

#define NNTM_TPS_QUANTIZED(X)                                                                   \
    X(layer_type, U8, 0, 1, 0, 7)                                                               \
    X(arrangement_type, U8, 0, 1, 0, minor >= 1 ? 1 : 0)                                        \
    X(kernel_rows, UE, 0, 1, 0, 0x7FFFFFFF)                                                     \
    X(kernel_cols, UE, 0, 1, 0, 0x7FFFFFFF)                                                     \
    X(qp, SE, 0, 1, -4096, 4096)                                                                \
    X(qp_density, UE, 0, 1, 0, 6)                                                               \
    X(num_gt_flags_minus1, UE, 0, 1, 0, 14)                                                     \
    X(tree_partition_type, U8, 1, f & NNTM_TOOL_CODING_TREE, 0, 3)                              \
    X(log2_ctu_size, UE, 1, NNTM_TPS_TREE(f, e), 1, 7)                                          \
    X(log2_min_cu_size, UE, 1, NNTM_TPS_TREE(f, e), 0, e->log2_ctu_size)                        \
    X(log2_min_qt_size_minus_log2_min_cu_size, UE, 1, NNTM_TPS_TREE(f, e), 0,                   \
      e->log2_ctu_size - e->log2_min_cu_size)                                                   \
    X(max_mtt_depth, UE, 1, NNTM_TPS_TREE(f, e) && e->tree_partition_type >= 2, 0, 4)           \
    X(cu_skip_enabled_flag, U1, 1, NNTM_TPS_TREE(f, e), 0, 1)                                   \
    X(cu_qp_delta_enabled_flag, U1, 1, NNTM_TPS_TREE(f, e), 0, 1)                               \
    X(intra_pred_enabled_flag, U1, 3, NNTM_TPS_TREE(f, e) && (f & NNTM_TOOL_INTRA_PRED), 0, 1)  \
    X(input_signal_type, UE, 1, f & NNTM_TOOL_SIGNAL_TYPES, 0, nsig - 1)                        \
    X(dep_quant_enabled_flag, U1, 1, f & NNTM_TOOL_DEP_QUANT, 0, 1)                             \
    X(dq_8_states_flag, U1, 4, (f & NNTM_TOOL_DQ_8STATES) && e->dep_quant_enabled_flag, 0, 1)   \
    X(dq_32_states_flag, U1, 5,                                                                 \
      (f & NNTM_TOOL_DQ_32STATES) && e->dep_quant_enabled_flag && !e->dq_8_states_flag, 0, 1)   \
    X(prob_window, U4, 4, f & NNTM_TOOL_PROB_WINDOW, 0, 12)                                     \
    X(suffix_ctx_flag, U1, 5, f & NNTM_TOOL_SUFFIX_CTX, 0, 1)                                   \
    X(row_pred_enabled_flag, U1, 5, (f & NNTM_TOOL_ROW_PRED) && !e->tree_partition_type, 0, 1)  \
    X(substream_rows, UE, 8, (f & NNTM_TOOL_ENTRY_POINTS) && !e->tree_partition_type, 0,        \
      e->kernel_rows)                                                                           \
    X(pred_mode, U8, 2, f & NNTM_TOOL_INTER_PRED, 0, 2)                                         \
    X(ref_tensor_id, UE, 2, NNTM_TPS_PRED(f, e) && e->pred_mode == 2, 0, (int64_t)tensor_id - 1) \
    X(ref_dtype, U8, 2, NNTM_TPS_PRED(f, e), 0, 2)                                              \
    X(pred_scale_minus4096, SE, 2, NNTM_TPS_PRED(f, e), -65535 - 4096, 65535 - 4096)            \
    X(ref_md5_byte, MD5, 2, NNTM_TPS_PRED(f, e), 0, 0)

/* The elements as read (0 when absent), named as in the spec. */
typedef struct nntm_tps_syntax {
#define NNTM_TPS_FIELD(name, desc, minor, present, lo, hi) int64_t name;
    NNTM_TPS_QUANTIZED(NNTM_TPS_FIELD)
#undef NNTM_TPS_FIELD
    uint8_t ref_md5[16];
} nntm_tps_syntax;

#endif
