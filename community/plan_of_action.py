"""The two working groups of the 2007 Plan of Action of Port of Spain, as data.

Extracted once from the Plan of Action (XV IACML, Port of Spain, 13 September 2007): paragraphs
5-9 give the groups, their mandates, their lettered activities and the ministries that coordinate
them. The full text of each activity is verbatim; the short titles are ours, for navigation, and
are translated through gettext (`gettext_noop` marks them for makemessages).
"""

from __future__ import annotations

from typing import Final, TypedDict

from django.utils.translation import gettext_noop


class TopicData(TypedDict):
    letter: str
    title: str
    text: str


class WorkingGroupData(TypedDict):
    slug: str
    number: int
    title: str
    mandate: str
    chair: str
    vice_chairs: list[str]
    topics: list[TopicData]


SOURCE: Final = (
    "Plan of Action of Port of Spain 2007, XV Inter-American Conference of Ministers of Labor"
)

WORKING_GROUPS: Final[list[WorkingGroupData]] = [
    {
        "slug": "wg1",
        "number": 1,
        "title": gettext_noop(
            "Decent work as an instrument for development and democracy in the context of globalization"
        ),
        "mandate": "Working Group 1 will consider decent work as a main focus of its activities, from a perspective that envisages greater integration of economic, social, and labor policies, in order to promote labor and employment as crosscutting themes of public policies. In this sense, the Working Group will continue to build on the work of former Working Group 1, “Labor Dimensions of the Summit of the Americas Process,” and will continue to examine the social and labor dimensions of globalization.",
        "chair": "BR",
        "vice_chairs": ["US", "GY"],
        "topics": [
            {
                "letter": "a",
                "title": gettext_noop(
                    "Coordination across employment, trade, education, health and environment"
                ),
                "text": "To address the needs for greater coordination among the employment, trade, education, health and environmental sectors of the hemisphere through a higher interaction of the IACML members in the different Inter-American environments.",
            },
            {
                "letter": "b",
                "title": gettext_noop("Migration and the rights of migrant workers"),
                "text": "To entrust the Technical Secretariat to continue acting as liaison between the IACML and the Inter-American Program on Migrants adopted by the OAS General Assembly in 2005, to provide periodic reports on the issue and to follow-up on the decisions and actions taken at other regional and international forums on migration topics. Examine and share existing information on the migration phenomenon, and continue our examination of countries’ initiatives to protect the labor rights of migrant workers in accordance with our reaffirmation that all migrants, regardless of their immigration status, should be accorded the full protection of human rights and the full observance of labor laws applicable to them, including the principles and labor rights embodied in the ILO Declaration on Fundamental Principles and Rights at Work.",
            },
            {
                "letter": "c",
                "title": gettext_noop("The informal sector and the informal economy"),
                "text": "To continue the analysis, and exchange best practices on the effective implementation of policies and programs to meet the challenges of the informal sector, particularly with respect to the gradual inclusion of non-registered workers in the formal sector, the extension of social protection to excluded sectors, and further training of workers in the informal economy to facilitate their incorporation into the formal economy. Additionally, examine and share existing information pertinent to the informal economy.",
            },
            {
                "letter": "d",
                "title": gettext_noop("Gender and employment"),
                "text": "To support concrete actions in the scope of the project on gender and employment in the framework of the RIAL/IACML which has been developed by the Technical Secretariat, aimed at identifying and systematizing experiences on the issue, and achieving gender mainstreaming on labor and employment policies.",
            },
            {
                "letter": "e",
                "title": gettext_noop("Policies for micro, small and medium-sized enterprises"),
                "text": "To promote the development of an integrated approach of labor and economic action in the formulation and the development of government policies for micro, small and medium-sized enterprises (MSMEs), and enlist the support of specialized agencies in this regard.",
            },
            {
                "letter": "f",
                "title": gettext_noop("Traditional and indigenous products"),
                "text": "To promote mechanisms that contribute to the creation of an enabling environment for enterprises involved in the production of traditional and indigenous products, and enlist the support of specialized agencies in this regard.",
            },
            {
                "letter": "g",
                "title": gettext_noop("National and regional plans for decent work"),
                "text": "To continue the exchange of good practices and cooperation experiences among the countries of the Hemisphere on existing National and Regional Plans for the creation of Decent Work and to share information on Decent Work indicators.",
            },
            {
                "letter": "h",
                "title": gettext_noop("Youth employment"),
                "text": "To exchange, among the countries of the Hemisphere, projects, programs and policies which have had positive impacts on youth employment generation, giving special emphasis to innovative initiatives and to those made under an intersectoral coordination scheme and in partnership with the private sector.",
            },
            {
                "letter": "i",
                "title": gettext_noop("Labor dimensions of integration and trade agreements"),
                "text": "To continue analyzing, within the limits of our competencies, the labor dimension, the cooperation mechanisms contained therein, and the effects on employment of the regional and subregional integration processes, as well as of bilateral and multilateral free trade agreements.",
            },
            {
                "letter": "j",
                "title": gettext_noop("HIV/AIDS and chronic diseases in the workplace"),
                "text": "To share information on policies and best practices aimed at reducing both discrimination against workers with HIV/AIDS in the workplace and the incidence of HIV/AIDS and chronic non-communicable diseases through awareness raising campaigns and the promotion of a healthy working environment.",
            },
            {
                "letter": "k",
                "title": gettext_noop("Social security systems"),
                "text": "To exchange experiences and good practices, from within and outside of the Hemisphere, on social security systems, in particular with respect to comprehensive coverage, benefits and mechanisms for transparency, efficiency and accountability in their collection and distribution processes.",
            },
        ],
    },
    {
        "slug": "wg2",
        "number": 2,
        "title": gettext_noop(
            "Strengthening the capacities of ministries of labor to respond to the challenges of promoting decent work in the context of globalization"
        ),
        "mandate": "Working Group 2 will continue making efforts to increase the institutional capacity of the Ministries of Labor, with a view to strengthening the promotion of decent work in the context of globalization. In this sense, the Group will continue to build on the work of former Working Group 2, “Building Capacity of Labor Ministries”.",
        "chair": "SV",
        "vice_chairs": ["UY", "CA"],
        "topics": [
            {
                "letter": "a",
                "title": gettext_noop("Capacity building of ministries and social partners"),
                "text": "Exchange information regarding capacity building of Ministries of Labor and social partner institutions, including but not limited to, issues related to coordination, sustainability, and participation of trade unions and employers’ organizations.",
            },
            {
                "letter": "b",
                "title": gettext_noop("Diagnostics of labor administration systems"),
                "text": "Continue discussions on the outcomes and follow-up activities related to the diagnostics of labor administration systems of those Ministries of Labor that have requested them, with a view to promoting a better understanding of the challenges associated with the implementation of recommendations and possible responses to those challenges.",
            },
            {
                "letter": "c",
                "title": gettext_noop("Organizational structures of the ministries of labor"),
                "text": "To promote improvements in the organizational structures of the Ministries of Labor to enable them to be more responsive to the new demands of the labor market; to strengthen competencies in the areas of administration, planning and results-based management; to implement communication strategies; and to improve the competencies of a professional civil service to better perform their responsibilities.",
            },
            {
                "letter": "d",
                "title": gettext_noop("Public employment services"),
                "text": "Identify new tools, and effective functional and organizational models, for public employment services (PES), including the upgrading of skills of public employment services personnel. Explore possibilities to coordinate with regional and international agencies the development of joint activities regarding employment. Similarly, continue promoting a holistic approach to PES and enlist the support of regional and international agencies in this regard.",
            },
            {
                "letter": "e",
                "title": gettext_noop("Workforce training and local development"),
                "text": "Advance the analysis of new approaches to the training of workforce, with special attention to providing workers with the skills required by the labor market. Examine successful initiatives where workforce development programs are integrated with local economic development strategies and Ministries of Labor work in cooperation with other ministries as appropriate, and in partnership with workers and employers.",
            },
            {
                "letter": "f",
                "title": gettext_noop("Employment and competitiveness strategies"),
                "text": "Analyze the possibility of undertaking a workshop with the participation of key institutions in the promotion of employment and competitiveness such as the Ministries of Trade, Finance, Professional Training Institutions and Ministries of Education, among others, with the goal of designing overarching strategies to guide the actions of the Ministries of Labor and the key institutions in the promotion of employment and decent work.",
            },
            {
                "letter": "g",
                "title": gettext_noop("Fundamental principles and rights at work"),
                "text": "Continue discussions, in collaboration with the ILO, for promoting the Fundamental Principles and Rights at Work as embodied in the ILO Declaration, giving attention to the role and contributions of trade unions and employers’ organizations. Of particular interest are strategies that have been proven to be successful and sustainable. Additionally, Working Group 2 will exchange information on the initiatives to incorporate the fundamental principles and rights at work into educational curricula.",
            },
            {
                "letter": "h",
                "title": gettext_noop("Eradicating the worst forms of child labor"),
                "text": "Exchange information on national policies and strategies aimed at fulfilling the Mar del Plata commitment to eradicate the worst forms of child labor by no later than 2020, and the challenges encountered.",
            },
            {
                "letter": "i",
                "title": gettext_noop("Social dialogue"),
                "text": "Undertake workshops to exchange information on national and regional experiences with social dialogue related to labor issues, including those undertaken within the OAS framework, with an emphasis on examining specific initiatives and programs that have improved the participation of the social partners.",
            },
            {
                "letter": "j",
                "title": gettext_noop("Enforcement of labor laws and labor inspection"),
                "text": "Exchange experiences on initiatives to improve the effective enforcement of labor laws, with particular attention to labor inspectorates at all levels, and to promote a culture of compliance with labor laws and regulations, including through outreach to and participation by trade unions and employers.",
            },
            {
                "letter": "k",
                "title": gettext_noop("Labor justice reforms"),
                "text": "Exchange information concerning normative reforms with the aim to improve and make more expeditious and efficient the administration of labor justice.",
            },
            {
                "letter": "l",
                "title": gettext_noop("Occupational safety and health"),
                "text": "Exchange information and best practices on countries’ regulations and codes, as well as strategies, policies, and experiences in the area of occupational safety and health, with a view to promoting a culture of prevention and control of occupational hazards in the Hemisphere.",
            },
            {
                "letter": "m",
                "title": gettext_noop("Informal employment"),
                "text": "Exchange best practices of effective policy and program implementation to address the challenges of informal employment, particularly as they relate to the incorporation of non-registered workers into formal employment.",
            },
            {
                "letter": "n",
                "title": gettext_noop("Preventing discrimination in the workplace"),
                "text": "Review best practices designed to prevent and eliminate discrimination in the workplace implemented by Ministries of Labor, employers organizations and trade unions. In this regard, exchange best practices and successful approaches that target specific vulnerable groups, both before and during employment.",
            },
        ],
    },
]
