"""MkDocs hook: the manual shows the benchmark results where they live, in ``benchmarks/results/``.

The pages link ``../benchmarks/results/...`` so that the same links work when the Markdown is
read in the repository. MkDocs only knows the files under ``docs/``, so this hook adds the result
files to the site (tables, figures, study notes, at ``benchmarks/results/`` in the site) and
points those links there. The archived runs (``runs/``: tens of MB of result JSONs and gzipped
rankings, read by the benchmark scripts) stay out of the site.
"""

import os

from mkdocs.structure.files import File, InclusionLevel

RESULTS = "benchmarks/results"
REPO_LINK = "](../" + RESULTS + "/"
SITE_LINK = "](" + RESULTS + "/"
LEFT_OUT = ("runs",)


def result_paths(repo_root):
    """Repository-relative paths of the result files the site carries, sorted."""
    paths = []
    for folder, subfolders, names in os.walk(os.path.join(repo_root, RESULTS)):
        if os.path.samefile(folder, os.path.join(repo_root, RESULTS)):
            subfolders[:] = [name for name in subfolders if name not in LEFT_OUT]
        for name in names:
            paths.append(os.path.relpath(os.path.join(folder, name), repo_root).replace(os.sep, "/"))
    return sorted(paths)


def on_files(files, config):
    repo_root = os.path.dirname(config["config_file_path"])
    for path in result_paths(repo_root):
        # Reached from the results page and the study notes, not from the navigation.
        files.append(File(path, repo_root, config["site_dir"], config["use_directory_urls"],
                          inclusion=InclusionLevel.NOT_IN_NAV))
    return files


def on_page_markdown(markdown, page, config, files):
    # Only the manual's own pages (one level, in docs/) link up into the repository.
    if page.file.src_uri.startswith(RESULTS + "/"):
        return markdown
    return markdown.replace(REPO_LINK, SITE_LINK)
