#!/usr/bin/env python3
"""Generate the stories260K pronoun task (docs/evaluation.md, "The stories260K task").

Each prompt introduces a name and stops where a TinyStories model writes the pronoun that
refers to it: the answer is " she" or " he" (the other is the wrong answer). Attributes: the
name and the template (the supervised dictionary's parametrisation) and the name's gender
(judged by F1 only: it is a function of the name). Pairs: each prompt with the prompt of the
same template and a name of the other gender, twice; the edit changes the name.

The names and templates were chosen by measuring the model's clean accuracy on candidates
(`sae evaluate-task` reports it per value). Deterministic: the output depends on nothing else.

usage: make_stories_task.py [OUT]   (default: examples/tasks/stories260K-pronoun.json)
"""
import json
import os
import sys

FEMALE = ["Lily", "Sue", "Anna", "Mia", "Lucy", "Sara", "Sally", "Lila", "Amy", "Emma"]
MALE = ["Tim", "Timmy", "Tom", "Ben", "Max", "Jack", "Bob", "Tommy", "Sam", "Joe"]
TEMPLATES = [
    "Once upon a time, there was a little {}. One day,",
    "{} was very happy because",
    "{} wanted to play, so",
    "{} was sad. Then",
    "{} saw a dog. Then",
    "Once upon a time, {} went to the park. There,",
    "{} liked to play with the ball because",
    "{} had a red ball. One day,",
]
PARTNERS = 2  # counterfactual pairs per prompt


def build():
    names = FEMALE + MALE
    prompts, index = [], {}
    for t, template in enumerate(TEMPLATES):
        for name in names:
            female = name in FEMALE
            index[(t, name)] = len(prompts)
            prompts.append({
                "text": template.format(name),
                "answer": "she" if female else "he",
                "wrong": "he" if female else "she",
                "labels": {"name": name, "gender": "female" if female else "male",
                           "template": "t%d" % t},
            })
    pairs = []
    for t in range(len(TEMPLATES)):
        for same, other in ((FEMALE, MALE), (MALE, FEMALE)):
            for k, name in enumerate(same):
                for p in range(PARTNERS):
                    cf = other[(k + p) % len(other)]
                    pairs.append({"base": index[(t, name)], "counterfactual": index[(t, cf)],
                                  "attribute": "name"})
    return {
        "name": "stories260K-pronoun",
        "hook": "resid_post.4",
        "bos": True,
        "attributes": [
            {"name": "name", "values": names, "dictionary": True},
            {"name": "gender", "values": ["female", "male"], "dictionary": False},
            {"name": "template", "values": ["t%d" % t for t in range(len(TEMPLATES))],
             "dictionary": True},
        ],
        "prompts": prompts,
        "pairs": pairs,
    }


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = argv[1] if len(argv) > 1 else os.path.join(root, "examples", "tasks",
                                                      "stories260K-pronoun.json")
    with open(out, "w") as f:
        json.dump(build(), f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
