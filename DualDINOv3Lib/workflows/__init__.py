"""The jobs behind the ``dualdinov3`` commands, as library functions: the demo, and (as they move here from
``Training/``) finetuning runs, cross-validation, prediction and evaluation of whole folders."""
