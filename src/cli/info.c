// info.c — the `info` command (commands.h): the architecture as a table
// (block, layers, params), the candidate layers (index, diffusers name, kind,
// params, MACs) and totals, for a job file's model (at its prune.granularity)
// or a checkpoint (at the granularity its removed names were made at), and the
// candidate counts at both granularities.
#include "cli/commands.h"

#include <string.h>
#include <sys/stat.h>

#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "model/unet.h"

// 859520964 -> "859,520,964"
static const char *grouped(long long v, char *buf, size_t n) {
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", v < 0 ? -v : v);
    size_t len = strlen(raw), o = 0;
    if (v < 0 && o + 1 < n) buf[o++] = '-';
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        if (i && (len - i) % 3 == 0 && o + 1 < n) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
    return buf;
}

static long long params_with_prefix(const UNet *u, const char *prefix) {
    long long n = 0;
    size_t len = strlen(prefix);
    for (int i = 0; i < u->pt.n; i++)
        if (!strncmp(u->pt.t[i].name, prefix, len)) n += (long long)u->pt.t[i].numel;
    return n;
}

static void print_block_row(FILE *out, const UNet *u, const char *prefix, const char *type, const char *layers) {
    char b[32];
    long long p = params_with_prefix(u, prefix);
    fprintf(out, "  %-26s %-26s %-10s %15s  %5.1f%%\n", prefix, type, layers, grouped(p, b, sizeof b),
            100.0 * p / (double)u->pt.total);
}

static int count_present(const Block *blk, int attn) {
    int n = 0;
    for (int j = 0; j < blk->n_layers; j++) {
        int cand = attn ? blk->attn[j].cand : blk->res[j].cand;
        n += attn ? blk->attn != NULL && blk->attn[j].first_tensor != blk->attn[j].end_tensor
                  : cand < 0 || blk->res[j].first_tensor != blk->res[j].end_tensor;
    }
    return n;
}

static void print_model(FILE *out, const UNet *u, const char *source) {
    const ModelConfig *m = &u->cfg;
    char b1[32], b2[32], b3[32], layers[32], pre[40];
    fprintf(out, "U-Net (diffusers UNet2DConditionModel) from %s\n", source);
    fprintf(out, "  %d blocks, channels", m->n_blocks);
    for (int i = 0; i < m->n_blocks; i++) fprintf(out, "%s%d", i ? "/" : " ", m->block_out_channels[i]);
    fprintf(out, ", layers_per_block %d, %s projections, cross_attention_dim %d, in/out %d/%d\n",
            m->layers_per_block, m->use_linear_projection ? "linear" : "conv", m->cross_attention_dim,
            m->in_channels, m->out_channels);
    char conv[160];
    conv2d_backend_describe(conv, sizeof conv);
    fprintf(out, "  convolutions in this build: %s\n", conv);
    fprintf(out, "  MACs at %dx%d, batch 1, %d context tokens\n\n", m->sample_size, m->sample_size,
            m->context_length);
    fprintf(out, "  %-26s %-26s %-10s %15s  %6s\n", "block", "type", "layers", "params", "share");
    print_block_row(out, u, "conv_in", "Conv2d 3x3", "1");
    print_block_row(out, u, "time_embedding", "TimestepEmbedding", "2 linear");
    if (u->pooled_dim > 0) print_block_row(out, u, "add_embedding", "TimestepEmbedding", "2 linear");
    for (int i = 0; i < m->n_blocks; i++) {
        const Block *blk = &u->down[i];
        snprintf(pre, sizeof pre, "down_blocks.%d.", i);
        snprintf(layers, sizeof layers, "%dR+%dA", count_present(blk, 0), blk->attn ? count_present(blk, 1) : 0);
        print_block_row(out, u, pre, m->down_cross[i] ? "CrossAttnDownBlock2D" : "DownBlock2D", layers);
    }
    snprintf(layers, sizeof layers, "%dR+%dA", 2 - (u->mid_res[0].cand >= 0 && !u->cands[u->mid_res[0].cand].present) -
                                                   (u->mid_res[1].cand >= 0 && !u->cands[u->mid_res[1].cand].present),
             u->cands[u->mid_attn.cand].present);
    print_block_row(out, u, "mid_block.", "UNetMidBlock2DCrossAttn", layers);
    for (int i = 0; i < m->n_blocks; i++) {
        const Block *blk = &u->up[i];
        snprintf(pre, sizeof pre, "up_blocks.%d.", i);
        snprintf(layers, sizeof layers, "%dR+%dA", count_present(blk, 0), blk->attn ? count_present(blk, 1) : 0);
        print_block_row(out, u, pre, m->up_cross[i] ? "CrossAttnUpBlock2D" : "UpBlock2D", layers);
    }
    print_block_row(out, u, "conv_norm_out", "GroupNorm", "1");
    print_block_row(out, u, "conv_out", "Conv2d 3x3", "1");
    long long total_macs = unet_total_macs(u);
    fprintf(out, "  %-26s %-26s %-10s %15s\n", "total", "", "", grouped((long long)u->pt.total, b1, sizeof b1));
    fprintf(out, "\nParameters: %s in %d tensors.  MACs: %s (%.2f G)\n\n", grouped((long long)u->pt.total, b1, sizeof b1),
            u->pt.n, grouped(total_macs, b2, sizeof b2), total_macs / 1e9);

    int nres = 0, nattn = 0, nblk = 0, nabsent = 0;
    long long cp = 0, cm = 0;
    fprintf(out, "Candidate layers at granularity \"%s\" (removable without changing any shape):\n",
            granularity_name(u->gran));
    fprintf(out, "  %4s  %-48s %-10s %-6s %14s %16s\n", "idx", "name", "kind", "stage", "params", "MACs");
    for (int c = 0; c < u->n_cands; c++) {
        const Candidate *cd = &u->cands[c];
        const char *stage = cd->stage == STAGE_DOWN ? "down" : cd->stage == STAGE_MID ? "mid" : "up";
        if (!cd->present) {
            nabsent++;
            fprintf(out, "  %4d  %-48s %-10s %-6s %14s %16s\n", c, cd->name, cand_kind_name(cd->kind), stage,
                    "(removed)", "-");
            continue;
        }
        fprintf(out, "  %4d  %-48s %-10s %-6s %14s %16s\n", c, cd->name, cand_kind_name(cd->kind), stage,
                grouped(cd->params, b1, sizeof b1), grouped(cd->macs, b2, sizeof b2));
        cd->kind == CAND_RESNET ? nres++ : cd->kind == CAND_ATTENTION ? nattn++ : nblk++;
        cp += cd->params, cm += cd->macs;
    }
    fprintf(out, "\nCandidates: %d (%d resnets, %d attentions", u->n_cands, nres, nattn);
    if (nblk) fprintf(out, ", %d transformer blocks", nblk);
    fprintf(out, ")");
    if (nabsent) fprintf(out, ", %d already removed", nabsent);
    fprintf(out, "; together %s params (%.1f%% of the U-Net), %s MACs (%.1f%%)\n", grouped(cp, b1, sizeof b1),
            100.0 * cp / (double)u->pt.total, grouped(cm, b3, sizeof b3), 100.0 * cm / (double)total_macs);
    fprintf(out, "Candidates by prune.granularity: %d (layer), %d (block)\n", unet_count_candidates(u, GRAN_LAYER),
            unet_count_candidates(u, GRAN_BLOCK));
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int info_run(FILE *out, const char *target, const char *const *sets, int n_sets, Error *e) {
    JobConfig jc;
    UNet *u = NULL;
    struct stat sb;
    if (ends_with(target, ".safetensors") || (stat(target, &sb) == 0 && S_ISDIR(sb.st_mode))) {
        // defaults (+ --set model.*) fill what a checkpoint cannot say, e.g. head counts
        if (job_config_load(&jc, NULL, sets, n_sets, e)) return -1;
        u = unet_describe_file(target, &jc.model, e);
    } else {
        if (job_config_load(&jc, target, sets, n_sets, e)) return -1;
        u = unet_create_at(&jc.model, (Granularity)jc.prune.granularity, NULL, e);
    }
    if (!u) return -1;
    print_model(out, u, target);
    unet_free(u);
    return 0;
}
