/*
 * sparsify — command dispatcher. One subcommand, one file (cmd/<name>.c);
 * this table is sorted by name.
 */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/git_rev.h"

static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} commands[] = {
    {"bench", cmd_bench, "time sparse kernels against dense BLAS"},
    {"check", cmd_check, "fail (exit 1) when a model misses its sparsity target"},
    {"densify", cmd_densify, "rebuild dense weights from .spz or compressed-tensors"},
    {"export", cmd_export, "write a compact sparse weight file"},
    {"finetune", cmd_torch_launch, "sparse transfer-learning fine-tune through libtorch"},
    {"inspect", cmd_inspect, "list the tensors of a checkpoint with their sparsity"},
    {"prune", cmd_prune, "prune a checkpoint to a sparsity and pattern"},
    {"recipe", cmd_recipe, "list, show or validate pruning recipes"},
    {"run", cmd_torch_launch, "run a TorchScript model on sparse kernels, against dense"},
    {"sensitivity", cmd_torch_launch, "how much each layer can be pruned; per-layer recipes"},
};

/* Also the source of the man page sparsify(1) and of the completions
 * (man/helpgen.c reads it): keep its layout. */
static void usage(FILE *f)
{
    fprintf(f, "usage: sparsify <command> [options]\n"
               "       sparsify --version [--json]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\noptions:\n"
               "  -h, --help   this list ('sparsify help <command>' describes a command)\n"
               "  --version    the version, git revision and features: libtorch, CUDA,\n"
               "               the instruction sets this CPU runs\n"
               "  --json       with --version: print them as one JSON object\n"
               "\n'sparsify <command> --help' or 'sparsify help <command>' describes a command.\n"
               "exit codes: 0 ok, 1 failed or check not met, 2 usage or bad input\n");
}

/* ---- --version ---- */

typedef struct torch_features {
    bool helper;         /* sparsify-torch found */
    char path[PATH_MAX];
    char tried[2 * PATH_MAX + 16];
    bool ran;            /* it answered --features */
    char torch_version[32];
    int cuda;            /* 1 a device is usable, 0 not, -1 unknown */
} torch_features;

/* Find sparsify-torch and, with libtorch, ask it what its libtorch offers
 * ("libtorch 1.13.1", "cuda 0"). */
static void query_torch(torch_features *t, bool ask)
{
    t->cuda = -1;
    t->helper = cli_torch_helper(t->path, sizeof t->path, t->tried, sizeof t->tried);
    if (!t->helper || !ask)
        return;
    int fd[2];
    if (pipe2(fd, O_CLOEXEC))
        return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    char *args[] = {t->path, "--features", NULL};
    extern char **environ;
    pid_t pid;
    int rc = posix_spawn(&pid, t->path, &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    char out[512];
    size_t n = 0;
    ssize_t r;
    while (rc == 0 && n < sizeof out - 1 && (r = read(fd[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fd[0]);
    int status;
    if (rc != 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        return;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "libtorch ", 9))
            snprintf(t->torch_version, sizeof t->torch_version, "%s", line + 9);
        else if (!strncmp(line, "cuda ", 5))
            t->cuda = line[5] == '1';
    }
    t->ran = true;
}

static int version(int argc, char **argv)
{
    bool json = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else {
            cli_error("unknown argument '%s' to --version (only --json)", argv[i]);
            return EXIT_USAGE;
        }
    }
    bool built[SP_ISA_COUNT] = {false};
    for (size_t i = 0; i < sp_ukernel_count(); i++)
        built[sp_ukernel_at(i)->isa] = true;
#ifdef SP_HAVE_TORCH
    const bool have_torch = true;
#else
    const bool have_torch = false;
#endif
#ifdef SP_HAVE_BLAS
    const bool have_blas = true;
#else
    const bool have_blas = false;
#endif
    torch_features tf = {.cuda = -1};
    query_torch(&tf, have_torch);
    sp_isa best = sp_isa_best();
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "version", SPARSIFY_VERSION);
        cJSON_AddStringToObject(root, "git", SPARSIFY_GIT_REV);
        cJSON *ft = cJSON_AddObjectToObject(root, "features");
        cJSON_AddBoolToObject(ft, "libtorch", have_torch);
        if (tf.helper)
            cJSON_AddStringToObject(ft, "torch_helper", tf.path);
        else
            cJSON_AddNullToObject(ft, "torch_helper");
        if (tf.ran)
            cJSON_AddStringToObject(ft, "libtorch_version", tf.torch_version);
        else
            cJSON_AddNullToObject(ft, "libtorch_version");
        if (tf.cuda < 0)
            cJSON_AddNullToObject(ft, "cuda");
        else
            cJSON_AddBoolToObject(ft, "cuda", tf.cuda == 1);
        cJSON_AddBoolToObject(ft, "blas", have_blas);
        cJSON *isa = cJSON_AddObjectToObject(ft, "isa");
        cJSON *b = cJSON_AddArrayToObject(isa, "built");
        cJSON *r = cJSON_AddArrayToObject(isa, "runs");
        for (int i = 0; i < SP_ISA_COUNT; i++) {
            if (built[i])
                cJSON_AddItemToArray(b, cJSON_CreateString(sp_isa_name((sp_isa)i)));
            if (sp_isa_supported((sp_isa)i))
                cJSON_AddItemToArray(r, cJSON_CreateString(sp_isa_name((sp_isa)i)));
        }
        cJSON_AddStringToObject(isa, "best", sp_isa_name(best));
        char *text = cJSON_Print(root);
        if (text)
            printf("%s\n", text);
        cJSON_free(text);
        cJSON_Delete(root);
        return text ? EXIT_OK : EXIT_FAILED;
    }
    printf("sparsify %s (git %s)\n", SPARSIFY_VERSION, SPARSIFY_GIT_REV);
    if (!have_torch)
        printf("libtorch  no: built without it (finetune and run unavailable)\n");
    else if (!tf.helper)
        printf("libtorch  yes, but its helper is missing (looked for %s)\n", tf.tried);
    else if (!tf.ran)
        printf("libtorch  yes, but its helper '%s' did not start\n", tf.path);
    else
        printf("libtorch  %s (finetune, run, sensitivity, wanda calibration: %s)\n",
               tf.torch_version, tf.path);
    printf("cuda      %s\n", tf.cuda == 1   ? "yes: libtorch sees a CUDA device"
                             : tf.cuda == 0 ? "no: libtorch without CUDA, or no device"
                             : !have_torch  ? "no: built without libtorch"
                                            : "unknown: sparsify-torch did not answer");
    printf("isa       %s (this CPU runs:", sp_isa_name(best));
    for (int i = 0; i < SP_ISA_COUNT; i++)
        if (sp_isa_supported((sp_isa)i))
            printf(" %s", sp_isa_name((sp_isa)i));
    printf("; built:");
    for (int i = 0; i < SP_ISA_COUNT; i++)
        if (built[i])
            printf(" %s", sp_isa_name((sp_isa)i));
    printf(")\n");
    printf("blas      %s\n", have_blas ? "yes (the dense baseline of bench)" : "no");
    return EXIT_OK;
}

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static long find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(name, commands[i].name))
            return (long)i;
    return -1;
}

/* One line for an unknown command, with the closest one when it is close. */
static int unknown_command(const char *name)
{
    const char *names[NCOMMANDS + 2];
    for (size_t i = 0; i < NCOMMANDS; i++)
        names[i] = commands[i].name;
    names[NCOMMANDS] = "help";
    names[NCOMMANDS + 1] = "version";
    const char *close = sp_closest_name(name, names, NCOMMANDS + 2);
    if (close)
        cli_error("unknown command '%s' (did you mean '%s'?); 'sparsify --help' lists them", name,
                  close);
    else
        cli_error("unknown command '%s'; 'sparsify --help' lists them", name);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    cli_signals_install();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || (!strcmp(name, "help") && argc == 2)) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(name, "help")) { /* sparsify help CMD = sparsify CMD --help */
        if (argc > 3) {
            cli_error("'help' takes one command, got '%s' and '%s'", argv[2], argv[3]);
            return EXIT_USAGE;
        }
        long i = find_command(argv[2]);
        if (i < 0)
            return unknown_command(argv[2]);
        char *hargv[] = {(char *)commands[i].name, "--help", NULL};
        return commands[i].fn(2, hargv);
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version"))
        return version(argc, argv);
    long i = find_command(name);
    if (i >= 0)
        return commands[i].fn(argc - 1, argv + 1);
    if (name[0] == '-') {
        static const char *const opts[] = {"--help", "--version", "-h"};
        const char *close = sp_closest_name(name, opts, 3);
        if (close)
            cli_error("unknown option '%s' (did you mean '%s'?)", name, close);
        else
            cli_error("unknown option '%s'; 'sparsify --help' lists the commands", name);
        return EXIT_USAGE;
    }
    return unknown_command(name);
}
