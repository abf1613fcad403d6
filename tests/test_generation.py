from ragft.prompts import get_template


def test_real_model_answers_from_context(generator):
    template = get_template("qa-context")
    prompt = generator.render(
        template.messages("What is the chart room computer called?", ["The chart room computer is called Beacon."])
    )
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    (out,) = generator.generate([prompt])
    assert "Beacon" in out.text
    assert out.prompt_tokens == len(generator.encode(prompt))
    assert 0 < out.completion_tokens <= generator.max_new_tokens


def test_batched_generation_matches_one_at_a_time(generator):
    template = get_template("qa")
    questions = [
        "What is the capital of France?",
        "Name a primary colour.",
        "What is two plus two? Answer in one word, please, and explain nothing else.",
    ]
    prompts = [generator.render(template.messages(q)) for q in questions]
    batched = [g.text for g in generator.generate(prompts)]
    single = [generator.generate([p])[0].text for p in prompts]
    assert batched == single
    assert "Paris" in batched[0]


def test_plan_covers_every_prompt_once_grouped_by_length(generator):
    prompts = [generator.render(get_template("qa").messages("word " * (i * 7 % 10))) for i in range(10)]
    plan = generator.plan(prompts)
    assert sorted(i for batch in plan for i in batch) == list(range(10))
    assert all(len(batch) <= generator.batch_size for batch in plan)
    lengths = [len(generator.encode(prompts[i])) for batch in plan for i in batch]
    assert lengths == sorted(lengths)
