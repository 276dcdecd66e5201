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
    {"finetune", cmd_finetune_launch, "sparse transfer-learning fine-tune through libtorch"},
    {"inspect", cmd_inspect, "list the tensors of a checkpoint with their sparsity"},
    {"prune", cmd_prune, "prune a checkpoint to a sparsity and pattern"},
    {"recipe", cmd_recipe, "list, show or validate pruning recipes"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sparsify <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'sparsify <command> --help' describes a command.\n"
               "exit codes: 0 ok, 1 failed or check not met, 2 usage or bad input\n");
}

int main(int argc, char **argv)
{
    cli_signals_install();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("sparsify %s\n", SPARSIFY_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    cli_error("unknown command '%s'", name);
    usage(stderr);
    return EXIT_USAGE;
}
