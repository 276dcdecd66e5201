/*
 * sparsify finetune — sparse transfer-learning fine-tune of a TorchScript
 * model through libtorch (bridge/train.h). This file parses options, draws
 * progress, writes the JSON-lines log and maps statuses to exit codes; the
 * training itself is in bridge/. docs/finetune.md is the reference.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd/torch_cli.h"

#ifdef SP_HAVE_TORCH
#include <cjson/cJSON.h>

#include "bridge/train.h"
#endif

static const char usage_text[] =
    "usage: sparsify finetune MODEL -o OUT --data TRAIN [options]\n"
    "       sparsify finetune MODEL --val VAL --eval-only\n"
    "\n"
    "Fine-tune a TorchScript model (torch.jit.save) through libtorch, keeping\n"
    "its pruning masks (every pruned weight stays exactly zero) or changing them\n"
    "on a recipe's schedule. Writes a TorchScript model that torch.jit.load runs.\n"
    "\n"
    "data:\n"
    "  --data FILE            training data: CSV (optional header row) or a .pt /\n"
    "                         .safetensors file with tensors 'inputs' and 'labels'\n"
    "  --val FILE             validation data, evaluated after every epoch\n"
    "  --label-column C       CSV label column: header name or index (default: last)\n"
    "  --task T               classification (cross-entropy; default) | regression (MSE)\n"
    "training:\n"
    "  -o, --output OUT       TorchScript model to write\n"
    "  --epochs N             default 1; 0 evaluates only\n"
    "  --eval-only            evaluate MODEL on --val (or --data) and stop\n"
    "  --batch-size N         default 32\n"
    "  --lr X                 peak learning rate (default 1e-3)\n"
    "  --optimizer O          adamw (default) | sgd\n"
    "  --momentum X           SGD momentum (default 0.9)\n"
    "  --weight-decay X       default 0\n"
    "  --lr-schedule S        constant (default) | linear | cosine\n"
    "  --warmup-epochs X      linear warm-up, in (fractional) epochs\n"
    "  --warmup-steps N       ... or in steps\n"
    "  --seed N               shuffling and fresh weights (default 0); CPU runs repeat exactly\n"
    "  --device D             cpu (default) | cuda | cuda:N\n"
    "  --threads N            CPU threads for libtorch (default: its own choice; with\n"
    "                         several local processes, the cores shared among them)\n"
    "masks:\n"
    "  (no recipe)            every prunable weight keeps its current zeros\n"
    "  --recipe R             a recipe (SparseML / llm-compressor YAML, a Markdown\n"
    "                         recipe card, JSON) or bundled name: its pruning modifiers\n"
    "                         (GMP, movement, constant, ...) set the masks; its training\n"
    "                         modifiers the epochs, learning rate and weight decay that\n"
    "                         no option here gives\n"
    "  --substitute           run the closest modifier sparsify has for one it does\n"
    "                         not implement (SparseGPT, OBS, M-FAC)\n"
    "  --no-masks             train every weight (dense baseline)\n"
    "  --kernels K            auto (default) | sparse | dense: once the masks are fixed,\n"
    "                         train the masked Linear layers on sparsify's sparse\n"
    "                         kernels (auto: where faster than dense; CPU only)\n"
    "distillation and new tasks:\n"
    "  --teacher DENSE.pt     distil from a TorchScript teacher\n"
    "  --distill-hardness H   weight of the distillation loss (default 0.5)\n"
    "  --distill-temperature T  softening temperature (default 2.0)\n"
    "  --reset-head NAME      replace Linear submodule NAME by a fresh one ...\n"
    "  --num-classes K        ... with K outputs\n"
    "data parallel (docs/finetune.md):\n"
    "  --nproc N              train on N local processes (one machine)\n"
    "  --rank R               this process's rank in a run on several machines ...\n"
    "  --world-size W         ... of W processes in all ...\n"
    "  --master ADDR:PORT     ... meeting at rank 0's address (or the variables RANK,\n"
    "                         WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)\n"
    "  --backend B            gloo (CPU) | nccl (CUDA); default: by --device\n"
    "  --dist-timeout S       seconds to wait for another process (default 300)\n"
    "                         (--batch-size is per process)\n"
    "output:\n"
    "  --log FILE.jsonl       one JSON object per epoch and per mask update\n"
    "  --save-every N         checkpoint every N epochs into OUT.ckpt/\n"
    "  --resume DIR           continue from a checkpoint folder (OUT.ckpt)\n"
    "  --force                replace existing outputs (OUT, OUT.ckpt/, the --log file)\n"
    "  --json                 print the final summary as JSON on stdout\n"
    "  -q, --quiet            no progress on stderr\n"
    "  -h, --help             this text\n"
    "\n"
    "exit codes: 0 ok, 1 training failed, 2 usage or bad input\n";

#ifndef SP_HAVE_TORCH

int cmd_finetune(int argc, char **argv)
{
    return torch_missing(argc, argv, usage_text, "fine-tune");
}

#else

typedef struct ft_ui {
    bool tty, quiet;
    FILE *log;
    const char *log_path;
    bool log_failed;
    double last_draw;
    int epochs;
} ft_ui;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void log_obj(ft_ui *ui, cJSON *o)
{
    if (ui->log) {
        char *s = cJSON_PrintUnformatted(o);
        if (!s || fprintf(ui->log, "%s\n", s) < 0 || fflush(ui->log) != 0)
            ui->log_failed = true;
        free(s);
    }
    cJSON_Delete(o);
}

static void clear_bar(ft_ui *ui)
{
    if (ui->tty && !ui->quiet && ui->last_draw > 0) {
        fputs("\r\033[K", stderr);
        ui->last_draw = 0;
    }
}

static void on_event(void *ctx, const sp_train_event *ev)
{
    ft_ui *ui = ctx;
    switch (ev->kind) {
    case SP_TRAIN_EV_START:
        if (!ui->quiet)
            fprintf(stderr,
                    "finetune: %lld training samples, %lld validation, %lld steps/epoch, "
                    "device %s, %zu masked tensors at %.2f%% sparsity\n",
                    (long long)ev->train_n, (long long)ev->val_n,
                    (long long)ev->steps_per_epoch, ev->message, ev->ntensors,
                    100.0 * ev->sparsity);
        if (!ui->quiet && ev->epoch > 0)
            fprintf(stderr, "finetune: resuming after epoch %d of %d\n", ev->epoch, ev->epochs);
        break;
    case SP_TRAIN_EV_STEP: {
        if (!ui->tty || ui->quiet)
            break;
        double t = mono_s();
        if (ev->step != ev->steps_per_epoch && t - ui->last_draw < 0.1)
            break;
        ui->last_draw = t;
        int width = 30, filled = (int)(width * ev->step / ev->steps_per_epoch);
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %lld/%lld loss %.4f lr %.3g", ev->epoch,
                ev->epochs, bar, (long long)ev->step, (long long)ev->steps_per_epoch,
                ev->train_loss, ev->lr);
        break;
    }
    case SP_TRAIN_EV_EPOCH: {
        clear_bar(ui);
        if (!ui->quiet) {
            fprintf(stderr, "epoch %d/%d: train loss %.4f", ev->epoch, ev->epochs,
                    ev->train_loss);
            if (ev->has_val) {
                fprintf(stderr, ", val loss %.4f", ev->val_loss);
                if (ev->val_accuracy >= 0)
                    fprintf(stderr, ", val accuracy %.2f%%", 100.0 * ev->val_accuracy);
            }
            fprintf(stderr, ", sparsity %.2f%%, %.3f ms/step (%s)\n", 100.0 * ev->sparsity,
                    ev->step_ms, ev->sparse_kernels ? "sparse kernels" : "dense");
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "epoch");
        cJSON_AddNumberToObject(o, "epoch", ev->epoch);
        cJSON_AddNumberToObject(o, "epochs", ev->epochs);
        cJSON_AddNumberToObject(o, "step", (double)ev->global_step);
        cJSON_AddNumberToObject(o, "lr", ev->lr);
        cJSON_AddNumberToObject(o, "train_loss", ev->train_loss);
        if (ev->has_val) {
            cJSON_AddNumberToObject(o, "val_loss", ev->val_loss);
            if (ev->val_accuracy >= 0)
                cJSON_AddNumberToObject(o, "val_accuracy", ev->val_accuracy);
        }
        cJSON_AddNumberToObject(o, "sparsity", ev->sparsity);
        cJSON_AddNumberToObject(o, "masked_zeros", (double)ev->masked_zeros);
        cJSON_AddNumberToObject(o, "masked_numel", (double)ev->masked_numel);
        cJSON_AddNumberToObject(o, "step_ms", ev->step_ms);
        cJSON_AddStringToObject(o, "kernels", ev->sparse_kernels ? "sparse" : "dense");
        cJSON_AddNumberToObject(o, "world_size", ev->world_size);
        cJSON_AddNumberToObject(o, "global_batch", (double)ev->global_batch);
        if (ev->world_size > 1) {
            cJSON_AddNumberToObject(o, "allreduce_ms", ev->allreduce_ms);
            cJSON_AddNumberToObject(o, "allreduce_wait_ms", ev->allreduce_wait_ms);
        }
        log_obj(ui, o);
        break;
    }
    case SP_TRAIN_EV_MASK: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "mask");
        cJSON_AddNumberToObject(o, "epoch", ev->epoch_f);
        cJSON_AddNumberToObject(o, "step", (double)ev->global_step);
        cJSON_AddNumberToObject(o, "sparsity", ev->sparsity);
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", (unsigned)ev->mask_checksum);
        cJSON_AddStringToObject(o, "mask_crc32", hex);
        if (ev->checksums) { /* every rank's, compared before this line was written */
            cJSON *cs = cJSON_AddArrayToObject(o, "rank_mask_crc32");
            for (int r = 0; r < ev->world_size; r++) {
                snprintf(hex, sizeof hex, "%08x", (unsigned)ev->checksums[r]);
                cJSON_AddItemToArray(cs, cJSON_CreateString(hex));
            }
        }
        cJSON *ts = cJSON_AddObjectToObject(o, "tensors");
        for (size_t i = 0; i < ev->ntensors; i++) {
            const sp_train_tensor_info *t = &ev->tensors[i];
            cJSON *e = cJSON_AddObjectToObject(ts, t->name);
            cJSON_AddNumberToObject(e, "sparsity",
                                    t->numel ? (double)t->zeros / (double)t->numel : 0);
            cJSON_AddNumberToObject(e, "zeros", (double)t->zeros);
            cJSON_AddNumberToObject(e, "numel", (double)t->numel);
            if (t->target >= 0)
                cJSON_AddNumberToObject(e, "target", t->target);
        }
        log_obj(ui, o);
        break;
    }
    case SP_TRAIN_EV_CHECKPOINT: {
        clear_bar(ui);
        if (!ui->quiet)
            fprintf(stderr, "checkpoint: epoch %d in '%s'\n", ev->epoch, ev->message);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "checkpoint");
        cJSON_AddNumberToObject(o, "epoch", ev->epoch);
        cJSON_AddStringToObject(o, "path", ev->message);
        log_obj(ui, o);
        break;
    }
    case SP_TRAIN_EV_WARNING:
        clear_bar(ui);
        cli_warn("%s", ev->message);
        break;
    case SP_TRAIN_EV_KERNELS: {
        clear_bar(ui);
        if (!ui->quiet) {
            fprintf(stderr, "finetune: masks fixed from epoch %g: %zu of %zu Linear layers on "
                            "the sparse kernels",
                    ev->epoch_f, ev->sparse_layers, ev->nlayers);
            for (size_t i = 0, k = 0; i < ev->nlayers; i++)
                if (ev->layers[i].sparse)
                    fprintf(stderr, "%s%s", k++ ? ", " : " (", ev->layers[i].name);
            fprintf(stderr, "%s\n", ev->sparse_layers ? ")" : "");
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "kernels");
        cJSON_AddNumberToObject(o, "epoch", ev->epoch_f);
        cJSON_AddNumberToObject(o, "step", (double)ev->global_step);
        cJSON *ls = cJSON_AddArrayToObject(o, "layers");
        for (size_t i = 0; i < ev->nlayers; i++)
            cJSON_AddItemToArray(ls, layer_report_json(&ev->layers[i]));
        log_obj(ui, o);
        break;
    }
    }
}

static bool pick(const char *opt, const char *val, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(val, names[i])) {
            *out = i;
            return true;
        }
    cli_error("option '%s': unknown value '%s'", opt, val);
    return false;
}

/* One line on what the recipe decides that no option did. */
static void recipe_note(const sp_recipe *r, const sp_train_opts *o, bool quiet)
{
    char buf[256];
    size_t k = 0;
    double e;
    buf[0] = '\0';
    if (!(o->set & SP_TRAIN_SET_EPOCHS) && o->epochs > 0 && sp_recipe_epochs(r, &e))
        k += (size_t)snprintf(buf + k, sizeof buf - k, ", %g epochs", e);
    if (!(o->set & SP_TRAIN_SET_LR) && sp_recipe_has_lr(r) && k < sizeof buf)
        k += (size_t)snprintf(buf + k, sizeof buf - k, ", the learning rate");
    if (!(o->set & SP_TRAIN_SET_WEIGHT_DECAY) && sp_recipe_has_weight_decay(r) && k < sizeof buf)
        snprintf(buf + k, sizeof buf - k, ", the weight decay");
    if (!quiet && buf[0])
        fprintf(stderr, "finetune: from the recipe: %s\n", buf + 2);
}

enum {
    OPT_DATA = 256, OPT_VAL, OPT_LABEL, OPT_TASK, OPT_EPOCHS, OPT_BATCH, OPT_LR, OPT_OPTIM,
    OPT_MOMENTUM, OPT_WD, OPT_SCHED, OPT_WARM_E, OPT_WARM_S, OPT_SEED, OPT_DEVICE,
    OPT_THREADS, OPT_RECIPE, OPT_NO_MASKS, OPT_TEACHER, OPT_HARD, OPT_TEMP, OPT_HEAD,
    OPT_CLASSES, OPT_LOG, OPT_SAVE, OPT_RESUME, OPT_EVAL, OPT_JSON, OPT_KERNELS,
    OPT_SUBSTITUTE,
    OPT_NPROC, OPT_RANK, OPT_WORLD, OPT_MASTER, OPT_BACKEND, OPT_DIST_TIMEOUT, OPT_FORCE,
};

#define MAX_WORLD 65536

/* A whole number from torchrun's variables (RANK, WORLD_SIZE, ...): false
 * with an error when it is set but not a number in [lo, hi]; *out untouched
 * when unset. */
static bool env_long(const char *name, long lo, long hi, long *out)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return true;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        cli_error("environment variable %s: '%s' is not a whole number in [%ld, %ld]", name, v,
                  lo, hi);
        return false;
    }
    *out = x;
    return true;
}

/* "host:port", "[v6::addr]:port" -> host (into buf), port. */
static bool parse_master(const char *s, char *host, size_t len, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return false;
    const char *h = s, *he = colon;
    if (*h == '[' && he[-1] == ']') {
        h++;
        he--;
    }
    if (he <= h || (size_t)(he - h) >= len)
        return false;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 1 || p > 65535)
        return false;
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = '\0';
    *port = (int)p;
    return true;
}

int cmd_finetune(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"data", required_argument, NULL, OPT_DATA},
        {"val", required_argument, NULL, OPT_VAL},
        {"label-column", required_argument, NULL, OPT_LABEL},
        {"task", required_argument, NULL, OPT_TASK},
        {"epochs", required_argument, NULL, OPT_EPOCHS},
        {"batch-size", required_argument, NULL, OPT_BATCH},
        {"lr", required_argument, NULL, OPT_LR},
        {"optimizer", required_argument, NULL, OPT_OPTIM},
        {"momentum", required_argument, NULL, OPT_MOMENTUM},
        {"weight-decay", required_argument, NULL, OPT_WD},
        {"lr-schedule", required_argument, NULL, OPT_SCHED},
        {"warmup-epochs", required_argument, NULL, OPT_WARM_E},
        {"warmup-steps", required_argument, NULL, OPT_WARM_S},
        {"seed", required_argument, NULL, OPT_SEED},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"recipe", required_argument, NULL, OPT_RECIPE},
        {"no-masks", no_argument, NULL, OPT_NO_MASKS},
        {"kernels", required_argument, NULL, OPT_KERNELS},
        {"substitute", no_argument, NULL, OPT_SUBSTITUTE},
        {"teacher", required_argument, NULL, OPT_TEACHER},
        {"distill-hardness", required_argument, NULL, OPT_HARD},
        {"distill-temperature", required_argument, NULL, OPT_TEMP},
        {"reset-head", required_argument, NULL, OPT_HEAD},
        {"num-classes", required_argument, NULL, OPT_CLASSES},
        {"log", required_argument, NULL, OPT_LOG},
        {"save-every", required_argument, NULL, OPT_SAVE},
        {"resume", required_argument, NULL, OPT_RESUME},
        {"eval-only", no_argument, NULL, OPT_EVAL},
        {"json", no_argument, NULL, OPT_JSON},
        {"force", no_argument, NULL, OPT_FORCE},
        {"nproc", required_argument, NULL, OPT_NPROC},
        {"rank", required_argument, NULL, OPT_RANK},
        {"world-size", required_argument, NULL, OPT_WORLD},
        {"master", required_argument, NULL, OPT_MASTER},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"dist-timeout", required_argument, NULL, OPT_DIST_TIMEOUT},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char *const tasks[] = {"classification", "regression"};
    static const char *const optims[] = {"sgd", "adamw"};
    static const char *const scheds[] = {"constant", "linear", "cosine"};
    static const char *const kernels[] = {"auto", "sparse", "dense"};
    static const char *const backends[] = {"gloo", "nccl"};
    static char master_host[256], env_host[256];

    sp_train_opts o;
    sp_train_opts_init(&o);
    ft_ui ui = {.tty = cli_stderr_is_tty()};
    bool eval_only = false, json = false, force = false, have_rank = false, have_world = false;
    long lv;
    double dv;
    int iv;

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o.out = optarg; break;
        case 'q': ui.quiet = true; break;
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        case OPT_DATA: o.data = optarg; break;
        case OPT_VAL: o.val = optarg; break;
        case OPT_LABEL: o.label_column = optarg; break;
        case OPT_TASK:
            if (!pick("--task", optarg, tasks, 2, &iv))
                return EXIT_USAGE;
            o.task = (sp_task)iv;
            break;
        case OPT_OPTIM:
            if (!pick("--optimizer", optarg, optims, 2, &iv))
                return EXIT_USAGE;
            o.optimizer = (sp_optimizer)iv;
            break;
        case OPT_SCHED:
            if (!pick("--lr-schedule", optarg, scheds, 3, &iv))
                return EXIT_USAGE;
            o.lr_schedule = (sp_lr_schedule)iv;
            o.set |= SP_TRAIN_SET_LR;
            break;
        case OPT_EPOCHS:
            if (!cli_parse_long("--epochs", optarg, &lv))
                return EXIT_USAGE;
            if (lv < 0 || lv > 1000000) {
                cli_error("option '--epochs': %ld is out of range", lv);
                return EXIT_USAGE;
            }
            o.epochs = (int)lv;
            o.set |= SP_TRAIN_SET_EPOCHS;
            break;
        case OPT_BATCH:
            if (!cli_parse_long("--batch-size", optarg, &lv))
                return EXIT_USAGE;
            o.batch_size = lv;
            break;
        case OPT_LR:
            if (!cli_parse_double("--lr", optarg, &o.lr))
                return EXIT_USAGE;
            o.set |= SP_TRAIN_SET_LR;
            break;
        case OPT_MOMENTUM:
            if (!cli_parse_double("--momentum", optarg, &o.momentum))
                return EXIT_USAGE;
            break;
        case OPT_WD:
            if (!cli_parse_double("--weight-decay", optarg, &o.weight_decay))
                return EXIT_USAGE;
            o.set |= SP_TRAIN_SET_WEIGHT_DECAY;
            break;
        case OPT_WARM_E:
            if (!cli_parse_double("--warmup-epochs", optarg, &o.warmup_epochs))
                return EXIT_USAGE;
            o.set |= SP_TRAIN_SET_LR;
            break;
        case OPT_WARM_S:
            if (!cli_parse_long("--warmup-steps", optarg, &lv))
                return EXIT_USAGE;
            o.warmup_steps = lv;
            o.set |= SP_TRAIN_SET_LR;
            break;
        case OPT_SEED:
            if (!cli_parse_long("--seed", optarg, &lv))
                return EXIT_USAGE;
            o.seed = (uint64_t)lv;
            break;
        case OPT_DEVICE: o.device = optarg; break;
        case OPT_THREADS:
            if (!cli_parse_long("--threads", optarg, &lv))
                return EXIT_USAGE;
            if (lv < 0 || lv > 4096) {
                cli_error("option '--threads': %ld is out of range", lv);
                return EXIT_USAGE;
            }
            o.threads = (int)lv;
            break;
        case OPT_RECIPE: o.recipe = optarg; break;
        case OPT_SUBSTITUTE: o.substitute = true; break;
        case OPT_NO_MASKS: o.no_masks = true; break;
        case OPT_KERNELS:
            if (!pick("--kernels", optarg, kernels, 3, &iv))
                return EXIT_USAGE;
            o.kernels = (sp_kernels)iv;
            break;
        case OPT_TEACHER: o.teacher = optarg; break;
        case OPT_HARD:
            if (!cli_parse_double("--distill-hardness", optarg, &dv))
                return EXIT_USAGE;
            if (dv < 0 || dv > 1) {
                cli_error("option '--distill-hardness': %g is out of range [0, 1]", dv);
                return EXIT_USAGE;
            }
            o.distill_hardness = dv;
            break;
        case OPT_TEMP:
            if (!cli_parse_double("--distill-temperature", optarg, &dv))
                return EXIT_USAGE;
            if (!(dv > 0)) {
                cli_error("option '--distill-temperature': %g must be > 0", dv);
                return EXIT_USAGE;
            }
            o.distill_temperature = dv;
            break;
        case OPT_HEAD: o.reset_head = optarg; break;
        case OPT_CLASSES:
            if (!cli_parse_long("--num-classes", optarg, &lv))
                return EXIT_USAGE;
            if (lv < 1) {
                cli_error("option '--num-classes': %ld must be at least 1", lv);
                return EXIT_USAGE;
            }
            o.num_classes = lv;
            break;
        case OPT_LOG: ui.log_path = optarg; break;
        case OPT_SAVE:
            if (!cli_parse_long("--save-every", optarg, &lv))
                return EXIT_USAGE;
            if (lv < 0 || lv > 1000000) {
                cli_error("option '--save-every': %ld is out of range", lv);
                return EXIT_USAGE;
            }
            o.save_every = (int)lv;
            break;
        case OPT_RESUME: o.resume = optarg; break;
        case OPT_EVAL: eval_only = true; break;
        case OPT_JSON: json = true; break;
        case OPT_FORCE: force = true; break;
        case OPT_NPROC:
            /* 'sparsify finetune --nproc N' starts the processes (cmd/launch.c) */
            return cli_usage_error("finetune", "--nproc: start the run with 'sparsify finetune'");
        case OPT_RANK:
            if (!cli_parse_long("--rank", optarg, &lv))
                return EXIT_USAGE;
            if (lv < 0 || lv >= MAX_WORLD) {
                cli_error("option '--rank': %ld is out of range", lv);
                return EXIT_USAGE;
            }
            o.rank = (int)lv;
            have_rank = true;
            break;
        case OPT_WORLD:
            if (!cli_parse_long("--world-size", optarg, &lv))
                return EXIT_USAGE;
            if (lv < 1 || lv > MAX_WORLD) {
                cli_error("option '--world-size': %ld is out of range [1, %d]", lv, MAX_WORLD);
                return EXIT_USAGE;
            }
            o.world_size = (int)lv;
            have_world = true;
            break;
        case OPT_MASTER:
            if (!parse_master(optarg, master_host, sizeof master_host, &o.master_port)) {
                cli_error("option '--master': '%s' is not ADDR:PORT (port 1-65535)", optarg);
                return EXIT_USAGE;
            }
            o.master_addr = master_host;
            break;
        case OPT_BACKEND:
            if (!pick("--backend", optarg, backends, 2, &iv))
                return EXIT_USAGE;
            o.backend = backends[iv];
            break;
        case OPT_DIST_TIMEOUT:
            if (!cli_parse_double("--dist-timeout", optarg, &dv))
                return EXIT_USAGE;
            if (!(dv > 0) || dv > 1e7) {
                cli_error("option '--dist-timeout': %g must be a positive number of seconds", dv);
                return EXIT_USAGE;
            }
            o.dist_timeout = dv;
            break;
        case ':':
            return cli_usage_error("finetune", "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("finetune", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc && !o.resume)
        return cli_usage_error("finetune", "no model given");
    if (argc - optind > 1)
        return cli_usage_error("finetune", "one model only, got '%s' too", argv[optind + 1]);
    o.model = optind < argc ? argv[optind] : NULL;
    if (eval_only) {
        if (!o.val && !o.data)
            return cli_usage_error("finetune", "--eval-only needs --val (or --data)");
        o.epochs = 0;
    }
    if (o.epochs > 0 && !o.data)
        return cli_usage_error("finetune", "training needs --data FILE");
    if (o.epochs > 0 && !o.out)
        return cli_usage_error("finetune", "training needs -o OUT (or --eval-only)");
    if (o.reset_head && !o.num_classes)
        return cli_usage_error("finetune", "--reset-head needs --num-classes K");
    if (strcmp(o.device, "cpu") && strcmp(o.device, "cuda") && strncmp(o.device, "cuda:", 5))
        return cli_usage_error("finetune", "--device '%s': expected cpu, cuda or cuda:N",
                               o.device);

    /* Data parallel: the flags, else torchrun's variables. */
    if (have_rank != have_world)
        return cli_usage_error("finetune", "--rank and --world-size go together");
    long ev = 0;
    if (!have_world) {
        ev = 1;
        if (!env_long("WORLD_SIZE", 1, MAX_WORLD, &ev))
            return EXIT_USAGE;
        o.world_size = (int)ev;
        ev = 0;
        if (!env_long("RANK", 0, MAX_WORLD - 1, &ev))
            return EXIT_USAGE;
        o.rank = (int)ev;
    }
    ev = o.rank;
    if (!env_long("LOCAL_RANK", 0, MAX_WORLD - 1, &ev))
        return EXIT_USAGE;
    o.local_rank = (int)ev;
    if (!o.master_addr && o.world_size > 1) {
        const char *a = getenv("MASTER_ADDR");
        ev = 0;
        if (!env_long("MASTER_PORT", 1, 65535, &ev))
            return EXIT_USAGE;
        if (a && *a) {
            snprintf(env_host, sizeof env_host, "%s", a);
            o.master_addr = env_host;
        }
        o.master_port = (int)ev;
    }
    if (o.world_size > 1 && (o.rank < 0 || o.rank >= o.world_size))
        return cli_usage_error("finetune", "rank %d is not in [0, %d) (world size %d)", o.rank,
                               o.world_size, o.world_size);
    if (o.world_size > 1 && !o.master_addr)
        return cli_usage_error("finetune",
                               "a run on %d processes needs rank 0's address: --master ADDR:PORT "
                               "or MASTER_ADDR and MASTER_PORT",
                               o.world_size);
    if (o.world_size > 1 && !o.threads) {
        /* local processes share the cores (torchrun's workers do likewise) */
        long local = 1, cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (!env_long("LOCAL_WORLD_SIZE", 1, MAX_WORLD, &local))
            return EXIT_USAGE;
        if (local > 1 && cores > 0)
            o.threads = (int)(cores / local > 0 ? cores / local : 1);
    }
    /* Only rank 0 talks and writes; the others report their own failures. */
    const bool rank0 = o.world_size <= 1 || o.rank == 0;
    if (!rank0) {
        ui.quiet = true;
        ui.log_path = NULL;
    }

    /* Outputs (docs/cli.md, "Outputs"): nothing replaced without --force,
     * never an input; the checkpoint folder of the run resumed from is
     * this run's to update. */
    if (rank0) {
        char resumed[PATH_MAX];
        const char *in = o.model;
        if (!in && o.resume) {
            snprintf(resumed, sizeof resumed, "%s/model.pt", o.resume);
            in = resumed;
        }
        const char *inputs[] = {in, o.data, o.val, o.teacher};
        const unsigned flags = (force ? CLI_OUT_FORCE : 0) | CLI_OUT_NEVER_IN_PLACE;
        /* an input named as the output first, then whether it exists */
        for (size_t i = 0; o.out && i < sizeof inputs / sizeof inputs[0]; i++)
            if (inputs[i] && cli_output_check(inputs[i], o.out, flags | CLI_OUT_FORCE))
                return EXIT_USAGE;
        if (o.out && cli_output_check(in, o.out, flags))
            return EXIT_USAGE;
        if (o.out && o.save_every > 0) {
            char ckpt[PATH_MAX];
            if ((size_t)snprintf(ckpt, sizeof ckpt, "%s.ckpt", o.out) >= sizeof ckpt)
                return cli_usage_error("finetune", "-o '%s': the name is too long", o.out);
            unsigned cf = (force ? CLI_OUT_FORCE : 0) | (o.resume ? CLI_OUT_IN_PLACE : 0);
            if (cli_output_check(o.resume, ckpt, cf))
                return EXIT_USAGE;
        }
        struct stat st;
        if (ui.log_path && !force && !o.resume && lstat(ui.log_path, &st) == 0) {
            cli_error("output '%s' exists; use --force to replace it (or --resume to add to it)",
                      ui.log_path);
            return EXIT_USAGE;
        }
    }

    if (o.substitute && !o.recipe)
        return cli_usage_error("finetune", "--substitute applies to --recipe");
    if (o.recipe) { /* every problem and warning of the recipe, and what it sets */
        sp_recipe *rec = NULL;
        int rc = cli_recipe_load(&rec, o.recipe, o.substitute);
        if (rc)
            return rc;
        recipe_note(rec, &o, ui.quiet);
        sp_recipe_free(rec);
    }

    if (ui.log_path) {
        ui.log = fopen(ui.log_path, o.resume ? "a" : "w");
        if (!ui.log) {
            cli_error("cannot open '%s': %s", ui.log_path, strerror(errno));
            return EXIT_FAILED;
        }
    }
    ui.epochs = o.epochs;

    sp_error err;
    sp_train_result r;
    memset(&r, 0, sizeof r);
    sp_status st = sp_train_run(&o, on_event, &ui, &r, &err);
    clear_bar(&ui);
    if (st == SP_OK) {
        cJSON *o2 = cJSON_CreateObject();
        cJSON_AddStringToObject(o2, "event", "done");
        cJSON_AddNumberToObject(o2, "epochs_run", r.epochs_run);
        cJSON_AddNumberToObject(o2, "steps", (double)r.steps);
        if (r.steps)
            cJSON_AddNumberToObject(o2, "train_loss", r.train_loss);
        if (r.has_val) {
            cJSON_AddNumberToObject(o2, "val_loss", r.val_loss);
            if (r.val_accuracy >= 0)
                cJSON_AddNumberToObject(o2, "val_accuracy", r.val_accuracy);
            cJSON_AddNumberToObject(o2, "val_samples", (double)r.val_n);
        }
        cJSON_AddNumberToObject(o2, "step_ms", r.step_ms);
        cJSON_AddStringToObject(o2, "kernels", r.sparse_layers ? "sparse" : "dense");
        cJSON_AddNumberToObject(o2, "sparse_layers", (double)r.sparse_layers);
        cJSON_AddNumberToObject(o2, "masked_tensors", (double)r.masked_tensors);
        cJSON_AddNumberToObject(o2, "masked_zeros", (double)r.masked_zeros);
        cJSON_AddNumberToObject(o2, "masked_numel", (double)r.masked_numel);
        cJSON_AddNumberToObject(o2, "sparsity",
                                r.masked_numel ? (double)r.masked_zeros / (double)r.masked_numel
                                               : 0.0);
        cJSON_AddNumberToObject(o2, "world_size", r.world_size);
        if (o.out)
            cJSON_AddStringToObject(o2, "output", o.out);
        if (!rank0) {
            /* quiet: rank 0 prints the summary */
        } else if (json) {
            char *s = cJSON_PrintUnformatted(o2);
            if (s)
                printf("%s\n", s);
            free(s);
        } else {
            if (r.has_val) {
                printf("%s: loss %.4f", o.val ? "val" : "data", r.val_loss);
                if (r.val_accuracy >= 0)
                    printf(", accuracy %.2f%%", 100.0 * r.val_accuracy);
                printf(" (%lld samples)\n", (long long)r.val_n);
            }
            if (r.masked_tensors)
                printf("sparsity: %.2f%% (%lld of %lld weights zero in %zu masked tensors)\n",
                       r.masked_numel ? 100.0 * (double)r.masked_zeros / (double)r.masked_numel
                                      : 0.0,
                       (long long)r.masked_zeros, (long long)r.masked_numel, r.masked_tensors);
            if (r.steps)
                printf("trained %d epoch(s), %lld steps, %.3f ms/step (median), %s\n",
                       r.epochs_run, (long long)r.steps, r.step_ms,
                       r.sparse_layers ? "sparse kernels" : "dense kernels");
            if (o.out)
                printf("wrote '%s'\n", o.out);
        }
        log_obj(&ui, o2);
    }
    if (ui.log && fclose(ui.log) != 0)
        ui.log_failed = true;
    if (st != SP_OK && r.reported_by_rank0)
        return cli_exit_code(st); /* rank 0 says what went wrong */
    if (st != SP_OK && !rank0 && strncmp(err.msg, "rank ", 5)) {
        cli_error("rank %d of %d: %s", o.rank, o.world_size,
                  err.msg[0] ? err.msg : sp_status_str(err.code));
        return cli_exit_code(st);
    }
    if (st != SP_OK)
        return cli_fail(&err);
    if (ui.log_failed) {
        cli_error("cannot write '%s'", ui.log_path);
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

#endif
