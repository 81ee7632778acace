"""gi.repository.WebKit2 is made at run time by PyGObject; tell the module graph it exists."""


def pre_safe_import_module(api):
    api.add_runtime_module(api.module_name)
