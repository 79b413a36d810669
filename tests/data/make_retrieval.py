"""Writes retrieval.json: the retrieval set of the search tests and `memledger bench search`.

60 target memories, each with a question phrased differently (the `shared` flag says whether
the question shares a content word with its memory; at least half do not), and distractor
memories of the same agents on neighbouring topics. Run: python tests/data/make_retrieval.py
"""

import json
from pathlib import Path

AGENTS = ["travel-bot", "support-bot", "health-bot", "home-bot", "work-bot"]
# (agent, memory, question, shares a keyword)
PAIRS = [
    ("travel-bot", "Maria always books an aisle seat when she flies", "where does Maria like to sit on a plane", False),
    ("travel-bot", "Tom's passport expires in March 2027", "when does Tom need new travel documents", False),
    ("travel-bot", "The client refuses red-eye departures", "does the client mind overnight flights", False),
    ("travel-bot", "Priya is a Star Alliance gold member", "which airline loyalty status does Priya hold", False),
    ("travel-bot", "Hotel rooms for the team must be near the conference venue", "where should we lodge the staff during the summit", False),
    ("travel-bot", "Lena gets motion sickness on boats", "can Lena go on a ferry trip comfortably", False),
    ("travel-bot", "Carlos prefers trains over planes for trips under four hours", "how does Carlos like to travel short distances", False),
    ("travel-bot", "The CFO needs a vegetarian meal on long-haul flights", "what food should be ordered for the finance chief in the air", False),
    ("travel-bot", "Our Tokyo office visit is planned for the second week of October", "when are we going to Japan", False),
    ("travel-bot", "Rental cars must be automatic for Ahmed", "Ahmed cannot drive a manual transmission vehicle", False),
    ("travel-bot", "The budget cap for business travel hotels is 180 euros a night", "what is the maximum nightly hotel budget", True),
    ("travel-bot", "Sofia wants a window seat on every flight", "which seat does Sofia choose on flights", True),
    ("support-bot", "The customer's invoice export to CSV fails with a timeout", "billing spreadsheet download stops working", False),
    ("support-bot", "Acme's admin cannot reset two-factor authentication", "the administrator is locked out of the second login step", False),
    ("support-bot", "The mobile app crashes when uploading photos larger than 20 MB", "big pictures make the phone application quit", False),
    ("support-bot", "Refunds are processed within five business days", "how long until money comes back after a return", False),
    ("support-bot", "The enterprise plan includes single sign-on", "does the top tier support SSO logins", False),
    ("support-bot", "Customer reported that emails land in the spam folder", "our messages are being flagged as junk", False),
    ("support-bot", "The API rate limit is 600 requests per minute", "how many calls can a client make to the interface each minute", False),
    ("support-bot", "Dark mode resets after every update", "the night theme keeps turning off after upgrades", False),
    ("support-bot", "The user wants to delete their account and all data", "someone asked us to erase everything about them", False),
    ("support-bot", "The webhook retries three times with exponential backoff", "how often are failed webhook deliveries retried", True),
    ("support-bot", "Search results in the dashboard load slowly for large teams", "dashboard search is slow", True),
    ("support-bot", "The printer integration only works with Windows drivers", "can the printer integration run on a Mac", True),
    ("health-bot", "Jonas is allergic to peanuts", "which foods could make Jonas sick", False),
    ("health-bot", "Anna takes her blood pressure medication every morning", "when does Anna take her hypertension pills", False),
    ("health-bot", "The patient is afraid of needles", "does the patient fear injections", False),
    ("health-bot", "Ravi runs five kilometres three times a week", "how much jogging does Ravi do", False),
    ("health-bot", "Elena cannot eat gluten", "Elena has coeliac disease, what bread can she have", False),
    ("health-bot", "Mark sleeps badly when he drinks coffee after noon", "why does Mark have insomnia in the evening", False),
    ("health-bot", "The physiotherapist recommended stretching the lower back daily", "what exercises did the physio suggest for lumbar pain", False),
    ("health-bot", "Grandma needs a wheelchair at airports", "does the elderly relative require mobility assistance when travelling", False),
    ("health-bot", "Nina is trying to drink two litres of water a day", "what is Nina's daily hydration goal", False),
    ("health-bot", "Paul's dentist appointment is on Friday at 3 pm", "when does Paul see the dentist", True),
    ("health-bot", "Olga is lactose intolerant and avoids milk", "can Olga have milk in her tea", True),
    ("health-bot", "The doctor asked Sam to cut down on salt", "what did the doctor tell Sam about his diet", True),
    ("home-bot", "The boiler needs servicing every autumn", "when should the heating system be maintained", False),
    ("home-bot", "The cat is fed twice a day, at seven and at six", "what times does the kitty get its meals", False),
    ("home-bot", "The spare key is hidden under the blue flower pot", "where can I find another way to unlock the door", False),
    ("home-bot", "Recycling is collected every other Tuesday", "which day do the bins for paper and plastic go out", False),
    ("home-bot", "The wifi password is on the fridge", "where is the network login written down", False),
    ("home-bot", "The kids must be in bed by eight on school nights", "what time do the children go to sleep during the week", False),
    ("home-bot", "The landlord wants two months notice before moving out", "how early must we tell the owner that we are leaving the flat", False),
    ("home-bot", "Tomatoes in the garden need watering every evening in summer", "how often should the vegetable patch be irrigated when it is hot", False),
    ("home-bot", "The dishwasher leaks when it is overloaded", "why is there water on the kitchen floor after washing plates", False),
    ("home-bot", "The plumber is coming on Monday to fix the shower", "when is the shower getting repaired", True),
    ("home-bot", "The family prefers pizza on Friday evenings", "what do we eat on Friday evenings", True),
    ("home-bot", "The car insurance renews in January", "when does the car insurance renew", True),
    ("work-bot", "Dana prefers morning meetings", "when does Dana like to get together with colleagues", False),
    ("work-bot", "The quarterly report is due on the 15th", "deadline for the three-month financial summary", False),
    ("work-bot", "Kai is on parental leave until June", "when will Kai be back from looking after the baby", False),
    ("work-bot", "The team decided to migrate billing to Stripe", "which payment provider will we move invoicing to", False),
    ("work-bot", "Friday afternoons are kept free of calls", "are people available for a video chat at the end of the week", False),
    ("work-bot", "Legal must approve every contract over 50000 dollars", "who signs off on large agreements", False),
    ("work-bot", "Mei wants feedback in writing rather than in person", "how should I give Mei comments on her work", False),
    ("work-bot", "The office is closed between Christmas and New Year", "are we working during the holidays at the end of December", False),
    ("work-bot", "The new hire starts on the first of September", "when does the new hire start", True),
    ("work-bot", "The design review moved to Thursday", "which day is the design review now", True),
    ("work-bot", "Backups of the production database run nightly at 2 am", "when do the production database backups run", True),
    ("work-bot", "Marketing owns the company blog", "who is responsible for the company blog", True),
]
# Distractors: the same agents, neighbouring topics, none answering a question above.
PEOPLE = ["Alex", "Bea", "Chen", "Dmitri", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jin"]
TOPICS = {
    "travel-bot": ["booked a hotel in {c}", "asked for a taxi to the {c} station", "collects postcards from {c}",
                   "visited {c} last spring", "wants a guidebook about {c}"],
    "support-bot": ["opened ticket about the {c} page layout", "asked how to rename a {c} folder",
                    "praised the {c} onboarding video", "changed the {c} notification settings",
                    "requested a demo of the {c} reports"],
    "health-bot": ["bought new {c} shoes", "enjoys {c} yoga classes", "tracks steps with a {c} watch",
                   "likes {c} soup in winter", "reads a magazine about {c} nutrition"],
    "home-bot": ["painted the {c} wall", "ordered a new {c} lamp", "repotted the {c} plant",
                 "wants {c} curtains in the living room", "keeps the {c} toolbox in the garage"],
    "work-bot": ["presented the {c} roadmap", "organised the {c} offsite", "renamed the {c} channel",
                 "wrote the {c} newsletter", "archived the {c} project board"],
}
WORDS = ["green", "Lisbon", "quarterly", "oak", "Berlin", "purple", "weekly", "Oslo", "bamboo", "summer"]


def distractors() -> list[tuple[str, str]]:
    out = []
    for agent, templates in TOPICS.items():
        for i, template in enumerate(templates):
            for j in range(6):
                person, word = PEOPLE[(i * 3 + j) % len(PEOPLE)], WORDS[(i + j * 7) % len(WORDS)]
                out.append((agent, f"{person} {template.format(c=word)}"))
    return out


def main() -> None:
    memories = [{"id": f"t{i:02d}", "agent": a, "content": m} for i, (a, m, _, _) in enumerate(PAIRS)]
    memories += [{"id": f"d{i:03d}", "agent": a, "content": c} for i, (a, c) in enumerate(distractors())]
    queries = [{"query": q, "expected": f"t{i:02d}", "shares_keyword": s} for i, (_, _, q, s) in enumerate(PAIRS)]
    Path(__file__).with_name("retrieval.json").write_text(json.dumps(
        {"memories": memories, "queries": queries}, indent=1) + "\n")


if __name__ == "__main__":
    main()
