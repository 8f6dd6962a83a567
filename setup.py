"""Maps the repository-root folders profiles/ and plugins/ into the package.

The project layout keeps data (profiles/) and kernels (plugins/) beside deploykit/, but an installed
wheel must find them: they ship as deploykit.profiles and deploykit.plugins. Metadata is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

MAPPED = {"deploykit": "deploykit", "deploykit.profiles": "profiles", "deploykit.plugins": "plugins"}


def _packages() -> list[str]:
    found = []
    for pkg, folder in MAPPED.items():
        found.append(pkg)
        found += [f"{pkg}.{sub}" for sub in find_namespace_packages(folder, exclude=["*__pycache__*"])]
    return found


setup(
    packages=_packages(),
    package_dir=MAPPED,
    package_data={"deploykit.profiles": ["**/*.yaml", "**/*.json"], "deploykit.plugins": ["**/*.md"]},
    include_package_data=True,
)
