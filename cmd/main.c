/*
 * sparsify — command dispatcher. One subcommand, one file (cmd/<name>.c);
 * this table is sorted by name.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cli.h"

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

static void usage(FILE *f)
{
    fprintf(f, "usage: sparsify <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'sparsify <command> --help' or 'sparsify help <command>' describes a command.\n"
               "exit codes: 0 ok, 1 failed or check not met, 2 usage or bad input\n");
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
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("sparsify %s\n", SPARSIFY_VERSION);
        return EXIT_OK;
    }
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
